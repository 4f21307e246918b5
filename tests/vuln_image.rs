//! The image reader and inventory on real images built by the tests on the local engine
//! (`FROM scratch`: no registry is reachable): real `*.dist-info` directories installed with
//! `pip install --target`, a whiteout layer, an opaque-directory layer, a mixed image (dpkg,
//! npm, Cargo, Go executables), the CycloneDX SBOM checked against the official 1.5 schema, and
//! `docker save` tarballs and the engine's layer directories read the same as the engine export.
//!
//! moat-vuln's tests, kept in package `moat` (which depends on moat-vuln with its `docker`
//! feature) so that moat-vuln's own dev-dependencies stay free of bollard and tokio.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use moat_vuln::image::{
    ImageError, ImageTree, read_image, read_image_exported, read_image_layers, read_saved,
};
use moat_vuln::inventory::{Inventory, inventory_image, synthetic_executable};
use moat_vuln::sbom::cyclonedx;
use moat_vuln::{Ecosystem, Package};

const SITE: &str = "usr/lib/python3.11/site-packages";
const PY_SPECS: [&str; 4] = [
    "urllib3==1.24.1",
    "Jinja2==2.10",
    "PyYAML==5.3",
    "requests==2.19.1",
];

fn describe(cmd: &Command, out: &Output) -> String {
    format!(
        "{cmd:?}: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{}", describe(cmd, &out));
    out
}

fn scratch_dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("moat-vuln-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// `pip install --target` into a directory kept across runs (keyed by what is installed), so
/// that only the first run downloads. PyPI must be reachable: failing is the right outcome
/// when it is not.
fn pip_install(key: &str, args: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-test-pip-{key}"));
    if dir.join(".complete").exists() {
        return dir;
    }
    let tmp = scratch_dir(&format!("pip-{key}"));
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
    ])
    .arg("--target")
    .arg(&tmp)
    .args(args);
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "pip could not install from PyPI (is it reachable?)\n{}",
        describe(&cmd, &out)
    );
    std::fs::write(tmp.join(".complete"), "").unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another test process won the race; its copy is as good.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir
}

fn python_site() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut args = vec!["--no-deps"];
        args.extend(PY_SPECS);
        pip_install("py-old-4", &args)
    })
}

fn busybox() -> &'static str {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (apt-get install busybox-static)")
}

fn runc() -> &'static str {
    ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("runc is installed (the Docker engine depends on it)")
}

fn docker_build(tag: &str, ctx: &Path, dockerfile: &str) {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    run(Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag])
        .arg(ctx));
    let _ = std::fs::remove_dir_all(ctx);
}

/// busybox plus the four old distributions in site-packages (one COPY layer).
fn py_image() -> &'static str {
    static IMAGE: OnceLock<&str> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let tag = "moat-test/vuln-py:1";
        let ctx = scratch_dir("ctx-py");
        std::fs::copy(busybox(), ctx.join("busybox")).unwrap();
        run(Command::new("cp").arg("-a").arg(python_site()).arg(ctx.join("site")));
        docker_build(
            tag,
            &ctx,
            &format!(
                "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCOPY site/ /{SITE}/\n"
            ),
        );
        tag
    })
}

/// The first image, then `rm -rf` of urllib3's dist-info: a whiteout in the top layer.
fn whiteout_image() -> &'static str {
    static IMAGE: OnceLock<&str> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let tag = "moat-test/vuln-py-whiteout:1";
        let base = py_image();
        docker_build(
            tag,
            &scratch_dir("ctx-wh"),
            &format!(
                "FROM {base}\nRUN [\"/bin/rm\", \"-rf\", \"/{SITE}/urllib3-1.24.1.dist-info\"]\n"
            ),
        );
        tag
    })
}

/// The first image, then site-packages removed and recreated with other content: an opaque
/// directory in the top layer.
fn opaque_image() -> &'static str {
    static IMAGE: OnceLock<&str> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let tag = "moat-test/vuln-py-opaque:1";
        let base = py_image();
        let script = format!(
            "rm -rf /{SITE} && mkdir -p /{SITE}/Other_Pkg-1.0.dist-info && printf 'Metadata-Version: 2.1\\nName: Other_Pkg\\nVersion: 1.0\\n' > /{SITE}/Other_Pkg-1.0.dist-info/METADATA"
        );
        docker_build(
            tag,
            &scratch_dir("ctx-opq"),
            &format!("FROM {base}\nRUN [\"/bin/sh\", \"-c\", {}]\n", serde_json::to_string(&script).unwrap()),
        );
        tag
    })
}

const GO_MODINFO: &str = "path\texample.com/svc\nmod\texample.com/svc\t(devel)\t\ndep\tgithub.com/gin-gonic/gin\tv1.6.2\th1:x=\ndep\tgolang.org/x/text\tv0.3.5\th1:y=\nbuild\tGOOS=linux\n";

/// Debian-style databases (with `etc/os-release` a symlink, as on Debian), npm packages, an old
/// `Cargo.lock`, a Python egg-info file, a real Go program (runc) and a synthetic Go program
/// in a second layer.
fn mixed_image() -> &'static str {
    static IMAGE: OnceLock<&str> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let tag = "moat-test/vuln-mixed:1";
        let ctx = scratch_dir("ctx-mixed");
        let root = ctx.join("rootfs");
        let put = |rel: &str, content: &[u8]| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        };
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/packagedb/dpkg");
        put("var/lib/dpkg/status", &std::fs::read(fixtures.join("valid")).unwrap());
        put("var/lib/dpkg/status.d/foo", &std::fs::read(fixtures.join("status.d/foo")).unwrap());
        put("var/lib/dpkg/status.d/foo.md5sums", b"d41d8cd98f00b204e9800998ecf8427e  usr/bin/foo\n");
        put(
            "usr/lib/os-release",
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        );
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
        put("app/node_modules/lodash/package.json", br#"{"name":"lodash","version":"4.17.4"}"#);
        put("app/node_modules/lodash/fp/package.json", br#"{"name":"fp","version":"0.0.0-internal"}"#);
        put("app/node_modules/@scope/pkg/package.json", br#"{"name":"@scope/pkg","version":"1.0.0"}"#);
        put(
            "app/Cargo.lock",
            b"version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"smallvec\"\nversion = \"0.6.9\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
        );
        put("usr/lib/python3/dist-packages/six-1.12.0.egg-info", b"Metadata-Version: 1.1\nName: six\nVersion: 1.12.0\n");
        std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        std::fs::copy(runc(), root.join("usr/local/bin/runc")).unwrap();
        let goapp = ctx.join("goapp");
        std::fs::write(&goapp, synthetic_executable("go1.16.3", GO_MODINFO, true, true)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&goapp, std::fs::Permissions::from_mode(0o755)).unwrap();
        docker_build(tag, &ctx, "FROM scratch\nCOPY rootfs/ /\nCOPY goapp /usr/local/bin/goapp\n");
        tag
    })
}

async fn read(reference: &str) -> ImageTree {
    let docker = bollard::Docker::connect_with_local_defaults().expect("Docker engine");
    read_image(&docker, reference)
        .await
        .unwrap_or_else(|e| panic!("read_image({reference}): {e}"))
}

/// `docker inspect`'s view: (ID, diff IDs).
fn inspect(reference: &str) -> (String, Vec<String>) {
    let out = run(Command::new("docker").args(["image", "inspect", reference]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = v[0]["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    (v[0]["Id"].as_str().unwrap().to_string(), layers)
}

fn summary(inv: &Inventory, eco: Ecosystem) -> Vec<(String, String)> {
    inv.packages
        .iter()
        .filter(|p| p.ecosystem == eco)
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn find<'a>(inv: &'a Inventory, name: &str) -> &'a Package {
    inv.packages
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} not in {:#?}", inv.packages))
}

/// `docker save` of `images` into a file.
fn save(images: &[&str], tag: &str) -> PathBuf {
    let file =
        std::env::temp_dir().join(format!("moat-vuln-save-{tag}-{}.tar", std::process::id()));
    run(Command::new("docker")
        .arg("save")
        .arg("-o")
        .arg(&file)
        .args(images));
    file
}

/// The entry names of the top layer of the (single) image in a save file.
fn top_layer_entries(save: &Path) -> Vec<String> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(save).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p.ends_with("layer.tar") || p == "manifest.json" {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b).unwrap();
            files.insert(p, b);
        }
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let top = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let mut names = Vec::new();
    let mut layer = tar::Archive::new(&files[&top][..]);
    for e in layer.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    names
}

fn tree(t: &ImageTree) -> Vec<(String, moat_vuln::image::TreeEntry)> {
    t.files
        .iter()
        .map(|(p, e)| (p.to_string(), e.clone()))
        .collect()
}

#[tokio::test]
async fn pip_installed_distributions_with_their_layer() {
    let image = read(py_image()).await;
    let (id, layers) = inspect(py_image());
    assert_eq!(image.meta.id, id);
    assert_eq!(
        image
            .meta
            .layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>(),
        layers
    );
    assert_eq!(image.meta.repo_tags, [py_image()]);
    assert_eq!(image.meta.reference.as_deref(), Some(py_image()));
    assert_eq!(image.meta.os.as_deref(), Some("linux"));

    let inv = inventory_image(&image);
    // Exactly the four, and nothing else at all (busybox is a C program).
    assert_eq!(
        inv.packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect::<Vec<_>>(),
        pairs(&[
            ("jinja2", "2.10"),
            ("pyyaml", "5.3"),
            ("requests", "2.19.1"),
            ("urllib3", "1.24.1")
        ])
    );
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
    assert_eq!(inv.os, None);
    let copy_layer = layers.last().unwrap();
    for p in &inv.packages {
        assert_eq!(p.ecosystem, Ecosystem::PyPI);
        assert_eq!(p.layer.as_ref(), Some(copy_layer), "{p:?}");
        assert!(
            p.location.starts_with(&format!("{SITE}/"))
                && p.location.ends_with(".dist-info/METADATA"),
            "{p:?}"
        );
        assert_eq!(p.distro_release, None);
    }
    assert_eq!(
        find(&inv, "urllib3").location,
        format!("{SITE}/urllib3-1.24.1.dist-info/METADATA")
    );
}

#[tokio::test]
async fn whiteout_removes_a_package() {
    let image = read(whiteout_image()).await;
    let inv = inventory_image(&image);
    assert_eq!(
        summary(&inv, Ecosystem::PyPI),
        pairs(&[
            ("jinja2", "2.10"),
            ("pyyaml", "5.3"),
            ("requests", "2.19.1")
        ])
    );
    assert_eq!(inv.packages.len(), 3);
    // The engine really wrote a whiteout (not a layer without the files).
    let file = save(&[whiteout_image()], "wh");
    let names = top_layer_entries(&file);
    assert!(
        names
            .iter()
            .any(|n| n.ends_with(".wh.urllib3-1.24.1.dist-info")),
        "{names:?}"
    );
    let saved = read_saved(&file, None).unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(inventory_image(&saved).packages, inv.packages);
}

#[tokio::test]
async fn opaque_directory_hides_lower_content() {
    let image = read(opaque_image()).await;
    let inv = inventory_image(&image);
    let (_, layers) = inspect(opaque_image());
    assert_eq!(
        summary(&inv, Ecosystem::PyPI),
        pairs(&[("other-pkg", "1.0")])
    );
    assert_eq!(inv.packages.len(), 1);
    assert_eq!(inv.packages[0].layer.as_ref(), layers.last());
    let file = save(&[opaque_image()], "opq");
    let names = top_layer_entries(&file);
    let _ = std::fs::remove_file(&file);
    assert!(
        names.iter().any(|n| n == &format!("{SITE}/.wh..wh..opq")),
        "the engine wrote no opaque marker: {names:?}"
    );
}

#[tokio::test]
async fn mixed_image_inventory() {
    let image = read(mixed_image()).await;
    let (_, layers) = inspect(mixed_image());
    let inv = inventory_image(&image);
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
    let os = inv
        .os
        .as_ref()
        .expect("os-release through the etc/os-release symlink");
    assert_eq!(
        (os.id.as_str(), os.version_id.as_deref()),
        ("debian", Some("12"))
    );

    let debian = summary(&inv, Ecosystem::Debian);
    assert_eq!(debian.len(), 8, "{debian:?}"); // 7 from status, 1 from status.d
    for p in inv
        .packages
        .iter()
        .filter(|p| p.ecosystem == Ecosystem::Debian)
    {
        assert_eq!(p.distro_release.as_deref(), Some("12"));
        assert!(p.source_name.is_some());
        assert_eq!(p.layer.as_ref(), Some(&layers[0]));
    }
    assert_eq!(find(&inv, "foo").location, "var/lib/dpkg/status.d/foo");
    assert_eq!(
        summary(&inv, Ecosystem::Npm),
        pairs(&[("@scope/pkg", "1.0.0"), ("lodash", "4.17.4")])
    );
    assert_eq!(
        summary(&inv, Ecosystem::CratesIo),
        pairs(&[("smallvec", "0.6.9")])
    );
    assert_eq!(summary(&inv, Ecosystem::PyPI), pairs(&[("six", "1.12.0")]));

    let go: Vec<&Package> = inv
        .packages
        .iter()
        .filter(|p| p.ecosystem == Ecosystem::Go)
        .collect();
    let from = |loc: &str| -> Vec<(String, String)> {
        go.iter()
            .filter(|p| p.location == loc)
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect()
    };
    assert_eq!(
        from("usr/local/bin/goapp"),
        pairs(&[
            ("github.com/gin-gonic/gin", "1.6.2"),
            ("golang.org/x/text", "0.3.5"),
            ("stdlib", "1.16.3")
        ])
    );
    assert!(
        go.iter()
            .filter(|p| p.location == "usr/local/bin/goapp")
            .all(|p| p.layer.as_ref() == Some(&layers[1]))
    );
    let runc = from("usr/local/bin/runc");
    assert_eq!(runc.len(), 1, "{runc:?}");
    assert_eq!(runc[0].0, "stdlib");
    assert_eq!(go.len(), 4);
    assert_eq!(inv.packages.len(), 8 + 2 + 1 + 1 + 4);
}

/// The SBOM of the mixed image: structure, and the official CycloneDX 1.5 JSON schema (strict)
/// and package-URL parser, from `cyclonedx-python-lib` installed with pip.
#[tokio::test]
async fn sbom_validates() {
    let image = read(mixed_image()).await;
    let inv = inventory_image(&image);
    let doc = cyclonedx(&image.meta, inv.os.as_ref(), &inv.packages);

    assert_eq!(doc["bomFormat"], "CycloneDX");
    assert_eq!(doc["specVersion"], "1.5");
    assert!(
        doc["serialNumber"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:")
    );
    let subject = &doc["metadata"]["component"];
    assert_eq!(subject["type"], "container");
    assert_eq!(subject["version"], image.meta.id.as_str());
    assert_eq!(
        subject["hashes"][0]["content"],
        image.meta.id.trim_start_matches("sha256:")
    );
    let components = doc["components"].as_array().unwrap();
    assert_eq!(components.len(), inv.packages.len());
    for c in components {
        for key in ["bom-ref", "type", "name", "version", "purl"] {
            assert!(c[key].is_string(), "{key} missing in {c}");
        }
        assert_eq!(c["type"], "library");
    }
    let purls: Vec<&str> = components
        .iter()
        .map(|c| c["purl"].as_str().unwrap())
        .collect();
    for want in [
        "pkg:deb/debian/acl@2.3.1-3?distro=debian-12",
        "pkg:npm/%40scope/pkg@1.0.0",
        "pkg:cargo/smallvec@0.6.9",
        "pkg:pypi/six@1.12.0",
        "pkg:golang/github.com/gin-gonic/gin@v1.6.2",
        "pkg:golang/stdlib@v1.16.3",
    ] {
        assert!(purls.contains(&want), "{want} not in {purls:?}");
    }
    let layer_prop = components.iter().find(|c| c["name"] == "smallvec").unwrap()["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "moat:layer")
        .unwrap()["value"]
        .clone();
    assert_eq!(layer_prop, image.meta.layers[0].diff_id.as_str());

    let lib = pip_install(
        "cyclonedx-lib",
        &["cyclonedx-python-lib[json-validation]==11.*"],
    );
    let dir = scratch_dir("sbom");
    std::fs::write(
        dir.join("bom.json"),
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
    .unwrap();
    let check = r#"
import json, sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
text = open(sys.argv[1]).read()
err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
if err is not None:
    sys.exit("schema: %s" % str(err)[:3000])
for c in json.loads(text)["components"]:
    p = PackageURL.from_string(c["purl"])
    # deb and apk namespaces name the distribution, the others are part of the name.
    name = p.name if p.type in ("deb", "apk") else (p.namespace + "/" if p.namespace else "") + p.name
    want = c["name"].lower() if p.type in ("pypi", "apk") else c["name"]
    if p.type == "golang":
        want, version = c["name"], "v" + c["version"]
    else:
        version = c["version"]
    if name != want or p.version != version:
        sys.exit("purl %s does not round-trip to %s@%s" % (c["purl"], want, version))
print("ok", len(json.loads(text)["components"]))
"#;
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", &lib)
        .arg("-c")
        .arg(check)
        .arg(dir.join("bom.json"));
    let out = run(&mut cmd);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok "),
        "{}",
        describe(&cmd, &out)
    );
}

/// `read_saved` on `docker save` output (plain, gzip-compressed, several images) gives what
/// the engine export gives.
#[tokio::test]
async fn saved_tarball_reads_like_the_engine() {
    for reference in [mixed_image(), opaque_image()] {
        let live = read(reference).await;
        let file = save(&[reference], "same");
        let saved = read_saved(&file, None).unwrap();
        assert_eq!(saved.meta.id, live.meta.id);
        assert_eq!(saved.meta.layers, live.meta.layers);
        assert_eq!(saved.meta.repo_tags, live.meta.repo_tags);
        assert_eq!(tree(&saved), tree(&live));
        assert_eq!(inventory_image(&saved), inventory_image(&live));

        let gz = file.with_extension("tar.gz");
        {
            let mut enc = flate2::write::GzEncoder::new(
                std::fs::File::create(&gz).unwrap(),
                flate2::Compression::fast(),
            );
            std::io::copy(&mut std::fs::File::open(&file).unwrap(), &mut enc).unwrap();
            enc.finish().unwrap();
        }
        let unzipped = read_saved(&gz, None).unwrap();
        assert_eq!(tree(&unzipped), tree(&live));
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&gz);
    }

    let both = save(&[py_image(), whiteout_image()], "both");
    let err = read_saved(&both, None).unwrap_err();
    assert!(matches!(err, ImageError::Ambiguous { .. }), "{err}");
    let chosen = read_saved(&both, Some(whiteout_image())).unwrap();
    let live = read(whiteout_image()).await;
    assert_eq!(chosen.meta.id, live.meta.id);
    assert_eq!(tree(&chosen), tree(&live));
    let _ = std::fs::remove_file(&both);
}

#[tokio::test]
async fn missing_image_is_not_found() {
    let docker = bollard::Docker::connect_with_local_defaults().expect("Docker engine");
    let err = read_image(&docker, "moat-test/does-not-exist:never")
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
}

/// Reading the engine's overlay2 layer directories in place gives exactly what the export
/// gives — whiteouts (0/0 character devices), opaque directories (an extended attribute), Go
/// executables, layer attribution — for every test image. On a root, overlay2 engine (this
/// machine, `.ci/run`) the fast path must be taken.
#[tokio::test]
async fn layer_directories_read_like_the_export() {
    let docker = bollard::Docker::connect_with_local_defaults().expect("Docker engine");
    let info = docker.info().await.expect("docker info");
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    // The layer-directory reader applies only as root on an overlay2 engine; the suite runs
    // there (scripts/test, as root), and a comparison that cannot run must not pass.
    assert!(
        root && info.driver.as_deref() == Some("overlay2"),
        "this test compares the layer-directory reader with the export: it needs root and the \
         overlay2 storage driver (root {root}, driver {:?})",
        info.driver
    );
    for reference in [py_image(), whiteout_image(), opaque_image(), mixed_image()] {
        let exported = read_image_exported(&docker, reference).await.unwrap();
        let layers = read_image_layers(&docker, reference)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{reference}: the layer directories were not used"));
        assert_eq!(layers.meta, exported.meta, "{reference}");
        assert_eq!(tree(&layers), tree(&exported), "{reference}");
        assert_eq!(
            inventory_image(&layers),
            inventory_image(&exported),
            "{reference}"
        );
        let auto = read(reference).await;
        assert_eq!(tree(&auto), tree(&exported), "{reference}");
    }
}
