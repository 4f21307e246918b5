//! SBOM output: CycloneDX 1.5 JSON for an image's (or a source tree's) packages, with a
//! package URL per component and Moat's provenance (file location, image layer) as properties.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::image::ImageMeta;
use super::inventory::OsRelease;
use super::{Ecosystem, Package};

/// The CycloneDX document of an image: `metadata.component` is the image (a `container`,
/// versioned by its image ID, with repo digests, tags and layer diff IDs as properties), and
/// every package is a `library` component. `os` (the image's `os-release`) names the
/// distribution in Debian and Alpine package URLs; without it they say `debian` / `alpine`.
pub fn cyclonedx(image: &ImageMeta, os: Option<&OsRelease>, packages: &[Package]) -> Value {
    let name = image
        .reference
        .clone()
        .or_else(|| image.repo_tags.first().cloned())
        .unwrap_or_else(|| image.id.clone());
    let hex = image.id.strip_prefix("sha256:").unwrap_or(&image.id);
    let mut props = vec![prop("moat:image:id", &image.id)];
    for d in &image.repo_digests {
        props.push(prop("moat:image:repo_digest", d));
    }
    for t in &image.repo_tags {
        props.push(prop("moat:image:tag", t));
    }
    if let Some(v) = &image.os {
        props.push(prop("moat:image:os", v));
    }
    if let Some(v) = &image.architecture {
        props.push(prop("moat:image:architecture", v));
    }
    if let Some(os) = os {
        if let Some(p) = &os.pretty_name {
            props.push(prop("moat:os:pretty_name", p));
        }
        props.push(prop("moat:os:id", &os.id));
        if let Some(v) = &os.version_id {
            props.push(prop("moat:os:version_id", v));
        }
    }
    for l in &image.layers {
        props.push(prop("moat:image:layer", &l.diff_id));
    }
    let mut component = json!({
        "bom-ref": image.id,
        "type": "container",
        "name": name,
        "version": image.id,
        "properties": props,
    });
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        component["hashes"] = json!([{"alg": "SHA-256", "content": hex}]);
    }
    if let Some(purl) = oci_purl(image) {
        component["purl"] = json!(purl);
    }
    document(component, os, packages)
}

/// The CycloneDX document of a source tree's locked dependencies; `name` names the project.
pub fn cyclonedx_source(name: &str, packages: &[Package]) -> Value {
    let component = json!({
        "bom-ref": format!("source:{name}"),
        "type": "application",
        "name": name,
    });
    document(component, None, packages)
}

fn document(subject: Value, os: Option<&OsRelease>, packages: &[Package]) -> Value {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let components: Vec<Value> = packages
        .iter()
        .map(|p| {
            let purl = purl(p, os);
            // bom-refs must be unique; the same package may be declared in several files.
            let n = seen.entry(purl.clone()).or_insert(0);
            *n += 1;
            let bom_ref = if *n == 1 {
                purl.clone()
            } else {
                format!("{purl}#{n}")
            };
            let mut props = vec![
                prop("moat:ecosystem", p.ecosystem.osv_name()),
                prop("moat:location", &p.location),
            ];
            if let Some(l) = &p.layer {
                props.push(prop("moat:layer", l));
            }
            if let Some(s) = &p.source_name {
                props.push(prop("moat:source_name", s));
            }
            if let Some(s) = &p.source_version {
                props.push(prop("moat:source_version", s));
            }
            if let Some(s) = &p.distro_release {
                props.push(prop("moat:distro_release", s));
            }
            json!({
                "bom-ref": bom_ref,
                "type": "library",
                "name": p.name,
                "version": p.version,
                "purl": purl,
                "evidence": {"occurrences": [{"location": p.location}]},
                "properties": props,
            })
        })
        .collect();
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_v4()),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339_now(),
            "tools": {"components": [{
                "type": "application",
                "name": "moat",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": subject,
        },
        "components": components,
    })
}

fn prop(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

/// The package URL of a package (purl-spec types `deb`, `apk`, `pypi`, `npm`, `cargo`,
/// `golang`), e.g. `pkg:deb/debian/openssl@3.0.11-1~deb12u2?distro=debian-12`.
pub fn purl(p: &Package, os: Option<&OsRelease>) -> String {
    let os_id = os.map(|o| o.id.as_str()).filter(|id| !id.is_empty());
    let distro = |default: &str| {
        p.distro_release
            .as_ref()
            .map(|r| format!("?distro={}-{}", enc(os_id.unwrap_or(default)), enc(r)))
            .unwrap_or_default()
    };
    match p.ecosystem {
        Ecosystem::Debian => {
            let ns = os_id.unwrap_or("debian");
            format!(
                "pkg:deb/{}/{}@{}{}",
                enc(ns),
                enc(&p.name),
                enc(&p.version),
                distro("debian")
            )
        }
        Ecosystem::Alpine => {
            let ns = os_id.unwrap_or("alpine");
            format!(
                "pkg:apk/{}/{}@{}{}",
                enc(ns),
                enc(&p.name.to_ascii_lowercase()),
                enc(&p.version),
                distro("alpine")
            )
        }
        Ecosystem::PyPI => format!(
            "pkg:pypi/{}@{}",
            enc(&p.name.to_ascii_lowercase().replace('_', "-")),
            enc(&p.version)
        ),
        Ecosystem::Npm => match p.name.split_once('/') {
            Some((scope, name)) if scope.starts_with('@') => {
                format!("pkg:npm/{}/{}@{}", enc(scope), enc(name), enc(&p.version))
            }
            _ => format!("pkg:npm/{}@{}", enc(&p.name), enc(&p.version)),
        },
        Ecosystem::CratesIo => format!("pkg:cargo/{}@{}", enc(&p.name), enc(&p.version)),
        Ecosystem::Go => {
            let path: Vec<String> = p.name.split('/').map(enc).collect();
            // Go spells module versions with a `v`; the inventory stores them as OSV does.
            let v = if p.version.starts_with('v') {
                p.version.clone()
            } else {
                format!("v{}", p.version)
            };
            format!("pkg:golang/{}@{}", path.join("/"), enc(&v))
        }
    }
}

/// `pkg:oci/<name>@sha256:…?repository_url=…` from the first repo digest (the manifest
/// digest a registry serves), when the image has one.
fn oci_purl(image: &ImageMeta) -> Option<String> {
    let rd = image.repo_digests.first()?;
    let (repo, digest) = rd.split_once('@')?;
    let name = repo.rsplit('/').next()?.to_ascii_lowercase();
    Some(format!(
        "pkg:oci/{}@{}?repository_url={}",
        enc(&name),
        enc(digest),
        enc(repo)
    ))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(eco: Ecosystem, name: &str, version: &str) -> Package {
        Package {
            ecosystem: eco,
            name: name.into(),
            version: version.into(),
            source_name: None,
            source_version: None,
            distro_release: None,
            location: "x".into(),
            layer: None,
        }
    }

    #[test]
    fn purls() {
        let mut deb = pkg(Ecosystem::Debian, "libssl3", "3.0.11-1~deb12u2");
        deb.distro_release = Some("12".into());
        assert_eq!(
            purl(&deb, None),
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?distro=debian-12"
        );
        let epoch = pkg(Ecosystem::Debian, "zlib1g", "1:1.2.13.dfsg-1");
        assert_eq!(
            purl(&epoch, None),
            "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1"
        );
        let mut apk = pkg(Ecosystem::Alpine, "musl", "1.2.4-r1");
        apk.distro_release = Some("3.18".into());
        assert_eq!(
            purl(&apk, None),
            "pkg:apk/alpine/musl@1.2.4-r1?distro=alpine-3.18"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::PyPI, "jinja2", "2.10"), None),
            "pkg:pypi/jinja2@2.10"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::Npm, "@types/node", "1.0.0"), None),
            "pkg:npm/%40types/node@1.0.0"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::CratesIo, "smallvec", "0.6.9"), None),
            "pkg:cargo/smallvec@0.6.9"
        );
        assert_eq!(
            purl(
                &pkg(Ecosystem::Go, "github.com/gin-gonic/gin", "1.6.2"),
                None
            ),
            "pkg:golang/github.com/gin-gonic/gin@v1.6.2"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::Go, "stdlib", "1.21.5"), None),
            "pkg:golang/stdlib@v1.21.5"
        );
    }

    #[test]
    fn document_shape() {
        let meta = ImageMeta {
            reference: Some("app:1".into()),
            id: format!("sha256:{}", "ab".repeat(32)),
            repo_digests: vec![format!(
                "registry.local/team/app@sha256:{}",
                "cd".repeat(32)
            )],
            ..ImageMeta::default()
        };
        let p = pkg(Ecosystem::CratesIo, "smallvec", "0.6.9");
        let doc = cyclonedx(&meta, None, &[p.clone(), p]);
        assert_eq!(doc["specVersion"], "1.5");
        assert_eq!(doc["metadata"]["component"]["type"], "container");
        assert_eq!(
            doc["metadata"]["component"]["purl"],
            format!(
                "pkg:oci/app@sha256%3A{}?repository_url=registry.local%2Fteam%2Fapp",
                "cd".repeat(32)
            )
        );
        let refs: Vec<&str> = doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["bom-ref"].as_str().unwrap())
            .collect();
        assert_eq!(
            refs,
            ["pkg:cargo/smallvec@0.6.9", "pkg:cargo/smallvec@0.6.9#2"]
        );
        let serial = doc["serialNumber"].as_str().unwrap();
        assert_eq!(serial.len(), "urn:uuid:".len() + 36);
        assert_eq!(&serial[9 + 14..9 + 15], "4");
        let ts = doc["metadata"]["timestamp"].as_str().unwrap();
        assert!(
            ts.len() == 20 && ts.ends_with('Z') && ts.starts_with("20"),
            "{ts}"
        );
    }
}
