//! Confinement, per-principal areas, and writes that never go through a link.

use std::os::unix::fs::symlink;

use super::*;

fn root() -> (tempfile::TempDir, DataRoot) {
    let dir = tempfile::tempdir().unwrap();
    let root = DataRoot::new(dir.path()).unwrap();
    (dir, root)
}

#[test]
fn paths_stay_inside_the_root() {
    let (dir, root) = root();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), dir.path().join("out")).unwrap();
    assert!(root.open_dir("anonymous", "d", "in", false).is_ok());
    for (requested, why) in [
        ("", "is empty"),
        ("../x", "contains `..`"),
        ("/etc", "is outside the data root"),
        ("out", "leads outside"),
        ("out/sub", "leads outside"),
    ] {
        let error = root
            .open_dir("anonymous", "d", requested, true)
            .unwrap_err();
        assert!(error.to_string().contains(why), "{requested}: {error}");
    }
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing made outside"
    );
    // Absolute paths inside the root are accepted.
    let absolute = dir.path().canonicalize().unwrap().join("in");
    assert!(
        root.open_dir("anonymous", "d", absolute.to_str().unwrap(), false)
            .is_ok()
    );
}

/// Issue 19, item 8: every principal shared the data root.
#[test]
fn each_principal_has_its_own_directory() {
    let (dir, root) = root();
    let root = root.per_principal(true);
    let alice = root.open_dir("alice", "d", "out", true).unwrap();
    write_atomically(&alice.dir, std::ffi::OsStr::new("f"), b"alice's").unwrap();
    assert_eq!(alice.shown, Path::new("alice/out"));
    let mallory = root.open_dir("mallory", "d", "out", true).unwrap();
    assert!(mallory.dir.read("f").is_err(), "mallory sees alice's file");
    // No name reaches another's directory, nor out of the root.
    for name in ["../alice", "alice/../x", ".", "..", "", "a/b", "x\0y"] {
        let area = area_name(name);
        assert!(
            !area.contains('/') && !area.starts_with('.') && area != "alice",
            "{name:?} -> {area}"
        );
    }
    assert_ne!(area_name("a/b"), area_name("a%2Fb"));
    assert!(area_name(&"x".repeat(1000)).len() < 100);
    assert_eq!(
        std::fs::read(dir.path().join("alice/out/f")).unwrap(),
        b"alice's"
    );
}

/// Issue 19, item 8: a thumbnail was written through a symbolic link already in the output
/// directory, to wherever it pointed.
#[test]
fn a_write_replaces_a_link_and_never_follows_it() {
    let (dir, root) = root();
    let out = root.open_dir("anonymous", "d", "out", true).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    symlink(&victim, dir.path().join("out/thumb.png")).unwrap();
    write_atomically(&out.dir, std::ffi::OsStr::new("thumb.png"), b"new").unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let written = dir.path().join("out/thumb.png");
    assert!(!written.symlink_metadata().unwrap().is_symlink());
    assert_eq!(std::fs::read(written).unwrap(), b"new");
    // Nothing partial is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["thumb.png"]);
}
