//! The image reader's unit tests: layers, whiteouts and opaque directories, Go binaries, OCI
//! layouts, bad archives and symlink chains, over archives built in memory.

use std::io::Cursor;

use sha2::{Digest, Sha256};

use super::save::*;
use super::*;
use crate::inventory::{self, *};

/// A layer tar from (path, kind, content) triples: kind `f` file, `x` executable, `d` dir,
/// `l` symlink (content = target), `h` hard link (content = target).
fn layer(entries: &[(&str, char, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, content) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(if *kind == 'x' { 0o755 } else { 0o644 });
        match kind {
            'd' => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            'l' | 'h' => {
                h.set_entry_type(if *kind == 'l' {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_size(0);
                b.append_link(&mut h, path, std::str::from_utf8(content).unwrap())
                    .unwrap();
            }
            _ => {
                h.set_size(content.len() as u64);
                b.append_data(&mut h, path, *content).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A docker-save archive of the given layers, listed in reverse order (as a save may).
fn save(layers: &[Vec<u8>], gzip_first: bool) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", hex::encode(Sha256::digest(l))))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diff_ids.iter().enumerate().map(|(i, _)| serde_json::json!({"created_by": format!("step {i}")})).collect::<Vec<_>>(),
    })
    .to_string();
    let config_hex = hex::encode(Sha256::digest(config.as_bytes()));
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["test/image:1"],
        "Layers": (0..layers.len()).map(|i| format!("l{i}/layer.tar")).collect::<Vec<_>>(),
    }])
    .to_string();
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    add(&mut b, "manifest.json", manifest.as_bytes());
    for (i, l) in layers.iter().enumerate().rev() {
        if i == 0 && gzip_first {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, l).unwrap();
            add(&mut b, &format!("l{i}/layer.tar"), &gz.finish().unwrap());
        } else {
            add(&mut b, &format!("l{i}/layer.tar"), l);
        }
    }
    add(&mut b, &format!("{config_hex}.json"), config.as_bytes());
    b.into_inner().unwrap()
}

/// Reads an archive both ways, as a stream and as a file (the seeking walk), checks that
/// they agree, and returns the result.
fn read_both(archive: Vec<u8>) -> ImageTree {
    let streamed = read_saved_from(Cursor::new(archive.clone()), None).unwrap();
    let file = std::env::temp_dir().join(format!(
        "moat-image-test-{}-{}.tar",
        std::process::id(),
        hex::encode(&Sha256::digest(&archive)[..8])
    ));
    std::fs::write(&file, &archive).unwrap();
    let seeked = read_saved(&file, None);
    let _ = std::fs::remove_file(&file);
    let seeked = seeked.unwrap();
    assert_eq!(seeked.meta, streamed.meta);
    assert_eq!(
        seeked.files.iter().collect::<Vec<_>>(),
        streamed.files.iter().collect::<Vec<_>>()
    );
    seeked
}

fn paths(t: &ImageTree) -> Vec<String> {
    t.files.iter().map(|(p, _)| p.to_string()).collect()
}

const META: &[u8] = b"Name: a\nVersion: 1\n";

#[test]
fn whiteouts_opaque_and_shadowing() {
    let base = layer(&[
        ("usr/", 'd', b""),
        ("usr/lib/", 'd', b""),
        ("usr/lib/os-release", 'f', b"ID=debian\nVERSION_ID=\"12\"\n"),
        ("etc/os-release", 'l', b"../usr/lib/os-release"),
        ("site/a-1.dist-info/METADATA", 'f', META),
        ("site/b-1.dist-info/METADATA", 'f', META),
        ("opq/c-1.dist-info/METADATA", 'f', META),
        ("swap/d-1.dist-info/METADATA", 'f', META),
        ("lib", 'l', b"usr/lib"),
        (
            "usr/bin/cat",
            'x',
            b"\x7fELF not really an ELF file but long enough to be sniffed ......",
        ),
    ]);
    let upper = layer(&[
        ("site/.wh.a-1.dist-info", 'f', b""),
        ("opq/", 'd', b""),
        ("opq/.wh..wh..opq", 'f', b""),
        ("opq/e-1.dist-info/METADATA", 'f', META),
        ("swap", 'l', b"elsewhere"),
        ("site/b-1.dist-info/INSTALLER", 'f', b"pip"),
        (
            "hl/f-1.dist-info/METADATA",
            'h',
            b"site/b-1.dist-info/METADATA",
        ),
    ]);
    for gz in [false, true] {
        let t = read_both(save(&[base.clone(), upper.clone()], gz));
        assert_eq!(
            paths(&t),
            [
                "etc/os-release",
                "hl/f-1.dist-info/METADATA",
                "lib",
                "opq/e-1.dist-info/METADATA",
                "site/b-1.dist-info/METADATA",
                "swap",
                "usr/lib/os-release",
            ]
        );
        let (l0, l1) = (&t.meta.layers[0].diff_id, &t.meta.layers[1].diff_id);
        assert_eq!(
            t.files
                .get("site/b-1.dist-info/METADATA")
                .unwrap()
                .layer
                .as_deref(),
            Some(l0.as_str())
        );
        assert_eq!(
            t.files
                .get("opq/e-1.dist-info/METADATA")
                .unwrap()
                .layer
                .as_deref(),
            Some(l1.as_str())
        );
        assert_eq!(t.files.read("hl/f-1.dist-info/METADATA"), Some(META));
        assert_eq!(
            t.files.read("etc/os-release"),
            Some(&b"ID=debian\nVERSION_ID=\"12\"\n"[..])
        );
        assert_eq!(
            t.files.resolve("lib/os-release").unwrap().0,
            "usr/lib/os-release"
        );
        assert_eq!(t.meta.repo_tags, ["test/image:1"]);
        assert_eq!(t.meta.layers[1].created_by.as_deref(), Some("step 1"));
        assert!(t.meta.id.starts_with("sha256:"));
    }
}

#[test]
fn whole_directory_whiteout_and_root_opaque() {
    let base = layer(&[
        ("app/x-1.dist-info/METADATA", 'f', META),
        ("keep/y-1.dist-info/METADATA", 'f', META),
    ]);
    let del = layer(&[("./.wh.app", 'f', b"")]);
    let t = read_both(save(&[base.clone(), del], false));
    assert_eq!(paths(&t), ["keep/y-1.dist-info/METADATA"]);
    let wipe = layer(&[
        (".wh..wh..opq", 'f', b""),
        ("new/z-1.dist-info/METADATA", 'f', META),
    ]);
    let t = read_both(save(&[base, wipe], false));
    assert_eq!(paths(&t), ["new/z-1.dist-info/METADATA"]);
}

#[test]
fn go_binaries_are_reduced_to_build_info() {
    let bin =
        inventory::synthetic_executable("go1.20.1", "path\tx\nmod\tx\tv1.0.0\t\n", true, true);
    // Without the note, only the writable segments are searched (seeking over the rest).
    let bare =
        inventory::synthetic_executable("go1.21.0", "path\ty\nmod\ty\tv2.0.0\t\n", true, false);
    let l = layer(&[
        ("usr/local/bin/app", 'x', &bin),
        ("usr/local/bin/data", 'f', &bin),
        ("usr/local/bin/bare", 'x', &bare),
    ]);
    let t = read_both(save(&[l], false));
    assert_eq!(paths(&t), ["usr/local/bin/app", "usr/local/bin/bare"]);
    for (path, go) in [
        ("usr/local/bin/app", "go1.20.1"),
        ("usr/local/bin/bare", "go1.21.0"),
    ] {
        match &t.files.get(path).unwrap().node {
            Node::GoBinary(info) => assert_eq!(info.go_version, go),
            other => panic!("{other:?}"),
        }
    }
}

/// An OCI image layout (`skopeo copy … oci-archive:`, `docker buildx … type=oci`): a
/// multi-platform index leading to a linux manifest, gzip-compressed layer blobs.
#[test]
fn oci_layout_with_gzip_layers() {
    let sha = |b: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(b)));
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, b).unwrap();
        e.finish().unwrap()
    };
    let base = layer(&[
        ("etc/os-release", 'f', b"ID=alpine\nVERSION_ID=3.19.1\n"),
        ("site/a-1.dist-info/METADATA", 'f', META),
        ("site/b-1.dist-info/METADATA", 'f', META),
    ]);
    let upper = layer(&[("site/.wh.a-1.dist-info", 'f', b"")]);
    let diff_ids = [sha(&base), sha(&upper)];
    let blobs = [gz(&base), gz(&upper)];
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "config": {"digest": sha(config.as_bytes()), "size": config.len()},
        "layers": blobs.iter().map(|b| serde_json::json!({"digest": sha(b), "size": b.len()})).collect::<Vec<_>>(),
    })
    .to_string();
    let other = r#"{"schemaVersion":2,"config":{"digest":"sha256:00"},"layers":[]}"#;
    let nested = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [
            {"digest": sha(other.as_bytes()), "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": sha(manifest.as_bytes()), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    })
    .to_string();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "digest": sha(nested.as_bytes()),
            "annotations": {"org.opencontainers.image.ref.name": "app:1"},
        }],
    })
    .to_string();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: String, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    let blob = |b: &[u8]| format!("blobs/{}", sha(b).replacen(':', "/", 1));
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), index.as_bytes());
    for part in [
        nested.as_bytes(),
        other.as_bytes(),
        manifest.as_bytes(),
        config.as_bytes(),
    ] {
        add(blob(part), part);
    }
    for l in &blobs {
        add(blob(l), l);
    }
    let t = read_both(b.into_inner().unwrap());
    assert_eq!(paths(&t), ["etc/os-release", "site/b-1.dist-info/METADATA"]);
    assert_eq!(t.meta.id, sha(config.as_bytes()));
    assert_eq!(t.meta.repo_tags, ["app:1"]);
    let layers: Vec<&str> = t.meta.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(layers, diff_ids);
}

#[test]
fn bad_archives() {
    let err = read_saved_from(Cursor::new(layer(&[("a", 'f', b"x")])), None).unwrap_err();
    assert!(matches!(err, ImageError::Format(_)), "{err}");
    let mut s = save(&[layer(&[("a", 'f', b"x")])], false);
    s.truncate(600);
    assert!(read_saved_from(Cursor::new(s.clone()), None).is_err());
    // The seeking walk notices the truncation too.
    let file = std::env::temp_dir().join(format!("moat-image-cut-{}.tar", std::process::id()));
    std::fs::write(&file, &s).unwrap();
    let cut = read_saved(&file, None);
    assert!(cut.is_err(), "{:?}", cut.map(|t| t.meta));
    // Cut inside a layer's skipped content, with manifest and config ahead of it: the
    // walk must not end quietly with part of the layer.
    let big = layer(&[
        ("usr/bin/tool", 'f', &[7u8; 8192][..]),
        ("site/a-1.dist-info/METADATA", 'f', META),
    ]);
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&big)));
    let config =
        serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [diff_id]}}).to_string();
    let manifest = serde_json::json!([{"Config": "c.json", "Layers": ["l/layer.tar"]}]).to_string();
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("manifest.json", manifest.as_bytes()),
        ("c.json", config.as_bytes()),
        ("l/layer.tar", &big[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }
    let whole = b.into_inner().unwrap();
    std::fs::write(&file, &whole).unwrap();
    assert_eq!(
        paths(&read_saved(&file, None).unwrap()),
        ["site/a-1.dist-info/METADATA"]
    );
    let at = whole.windows(5).position(|w| w == [7u8; 5]).unwrap() + 4096;
    assert!(read_saved_from(Cursor::new(whole[..at].to_vec()), None).is_err());
    std::fs::write(&file, &whole[..at]).unwrap();
    let cut = read_saved(&file, None);
    let _ = std::fs::remove_file(&file);
    assert!(cut.is_err(), "{:?}", cut.map(|t| t.meta));
}

#[test]
fn resolve_symlink_chains() {
    let mut t = FileTree::new();
    t.insert(
        "usr/lib/os-release",
        None,
        Node::File(b"ID=alpine".to_vec()),
    );
    t.insert("etc/os-release", None, Node::Symlink("/etc/alt".into()));
    t.insert("etc/alt", None, Node::Symlink("../lib/os-release".into()));
    t.insert("lib", None, Node::Symlink("usr/lib".into()));
    t.insert("loop", None, Node::Symlink("loop".into()));
    assert_eq!(t.read("etc/os-release"), Some(&b"ID=alpine"[..]));
    assert_eq!(t.read("loop"), None);
    assert_eq!(t.read("nothing"), None);
}
