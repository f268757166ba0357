//! Every lockfile format read from the fixtures in `tests/fixtures/lockfiles/`, the
//! differences between two versions of each, and OSV advisories from
//! `tests/fixtures/osv/` matched against them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use warden_audit::lockdiff::{self, ChangeKind};
use warden_audit::lockfile::{Ecosystem, Format, Lockfile};
use warden_audit::osv;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn fixture(path: &str) -> PathBuf {
    Path::new(FIXTURES).join("lockfiles").join(path)
}

fn read(path: &str) -> Lockfile {
    Lockfile::read(&fixture(path)).unwrap_or_else(|e| panic!("{path}: {e:#}"))
}

/// `name version` of every package, in the lockfile's order.
fn listing(lock: &Lockfile) -> Vec<String> {
    lock.packages
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect()
}

fn diff_lines(old: &str, new: &str) -> Vec<String> {
    lockdiff::diff(&read(old), &read(new))
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn pip_freeze_requirements_read_with_normalised_names() {
    let lock = read("pip/v1/requirements.txt");
    assert_eq!(lock.files[0].format, Format::Requirements);
    assert_eq!(lock.packages.len(), 17);
    assert!(lock.packages.iter().all(|p| p.ecosystem == Ecosystem::PyPI));
    let names: Vec<&str> = lock.packages.iter().map(|p| p.name.as_str()).collect();
    for expected in [
        "flask",
        "jinja2",
        "markupsafe",
        "pydantic-core",
        "typing-extensions",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(listing(&lock).contains(&"pydantic 2.10.0rc1".to_owned()));
}

#[test]
fn pip_diff_orders_versions_by_pep_440() {
    assert_eq!(
        diff_lines("pip/v1/requirements.txt", "pip/v2/requirements.txt"),
        [
            "charset-normalizer 3.3.2 → 3.4.0 (minor)",
            "gunicorn 23.0.0 (added)",
            "packaging 24.2 (added)",
            "pydantic 2.10.0rc1 → 2.10.0 (pre-release)",
            "python-multipart 0.0.9 → 0.0.10 (patch)",
            "urllib3 2.2.3 → 2.2.2 (patch)",
            "werkzeug 3.0.4 → 3.0.6 (patch)",
        ]
    );
    let changes = lockdiff::diff(
        &read("pip/v1/requirements.txt"),
        &read("pip/v2/requirements.txt"),
    );
    let kind = |name: &str| changes.iter().find(|c| c.name == name).unwrap().kind;
    // 0.0.10 is newer than 0.0.9, and 2.10.0 than 2.10.0rc1.
    assert_eq!(kind("python-multipart"), ChangeKind::Upgraded);
    assert_eq!(kind("pydantic"), ChangeKind::Upgraded);
    assert_eq!(kind("urllib3"), ChangeKind::Downgraded);
    assert!(changes.iter().all(|c| c.ecosystem == Ecosystem::PyPI));
    // Backwards, every direction flips.
    let back = lockdiff::diff(
        &read("pip/v2/requirements.txt"),
        &read("pip/v1/requirements.txt"),
    );
    let kind = |name: &str| back.iter().find(|c| c.name == name).unwrap().kind;
    assert_eq!(kind("python-multipart"), ChangeKind::Downgraded);
    assert_eq!(kind("gunicorn"), ChangeKind::Removed);
}

#[test]
fn poetry_lock_reads_registry_directory_and_git_packages() {
    let lock = read("poetry/v1/poetry.lock");
    assert_eq!(lock.files[0].format, Format::PoetryLock);
    assert_eq!(
        listing(&lock),
        [
            "certifi 2024.7.4",
            "charset-normalizer 3.3.2",
            "idna 3.7",
            "orders-client 0.4.0",
            "requests 2.31.0",
            "urllib3 2.2.2",
        ]
    );
    let find = |lock: &Lockfile, name: &str| {
        lock.packages
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .clone()
    };
    let client = find(&lock, "orders-client");
    assert_eq!(client.source.as_deref(), Some("path+../orders-client"));
    assert!(!client.from_registry() && client.checksum.is_none());
    // The sdist's hash, the same on every platform.
    let charset = find(&lock, "charset-normalizer");
    assert_eq!(
        charset.checksum.as_deref(),
        Some("sha256:091d8cefdd56934ad76e9e2b5394f35d66f8ea58d0d27a80982b367e79046676")
    );
    let v2 = read("poetry/v2/poetry.lock");
    assert_eq!(
        find(&v2, "orders-client").source.as_deref(),
        Some(
            "git+https://git.example.org/acme/orders-client.git#5f2c1d8e9a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d"
        )
    );
    assert_eq!(
        diff_lines("poetry/v1/poetry.lock", "poetry/v2/poetry.lock"),
        [
            "certifi 2024.7.4 → 2024.8.30 (minor)",
            "orders-client 0.4.0 → 0.5.0 (minor)",
            "requests 2.31.0 → 2.32.3 (minor)",
        ]
    );
}

#[test]
fn uv_lock_reads_registry_and_editable_packages() {
    let lock = read("uv/v1/uv.lock");
    assert_eq!(lock.files[0].format, Format::UvLock);
    assert_eq!(
        listing(&lock),
        [
            "anyio 4.6.2.post1",
            "greenlet 3.1.1",
            "idna 3.10",
            "inventory-api 0.1.0",
            "sniffio 1.3.1",
            "sqlalchemy 2.0.0rc1",
            "typing-extensions 4.12.2",
        ]
    );
    let project = lock
        .packages
        .iter()
        .find(|p| p.name == "inventory-api")
        .unwrap();
    assert_eq!(project.source.as_deref(), Some("editable+."));
    let greenlet = lock.packages.iter().find(|p| p.name == "greenlet").unwrap();
    assert!(greenlet.from_registry());
    assert!(greenlet.checksum.as_deref().unwrap().starts_with("sha256:"));
    assert_eq!(
        diff_lines("uv/v1/uv.lock", "uv/v2/uv.lock"),
        [
            "anyio 4.6.2.post1 → 4.7.0 (minor)",
            "inventory-api 0.1.0 → 0.2.0 (minor)",
            "sqlalchemy 2.0.0rc1 → 2.0.0 (pre-release)",
        ]
    );
}

#[test]
fn package_lock_v3_and_v2_read_nested_copies_and_integrity() {
    for path in [
        "npm/v1/package-lock.json",
        "npm/lockfile-v2/package-lock.json",
    ] {
        let lock = read(path);
        assert_eq!(lock.files[0].format, Format::PackageLock);
        assert_eq!(
            listing(&lock),
            [
                "@types/ms 0.7.34",
                "debug 4.3.4",
                "ms 2.1.2",
                "ms 3.0.0-beta.1"
            ],
            "{path}"
        );
        assert!(lock.packages.iter().all(|p| p.ecosystem == Ecosystem::Npm
            && p.checksum.as_deref().unwrap().starts_with("sha512-")
            && p.from_registry()));
    }
    // Two versions of ms: the nested copy and the top-level pre-release, each
    // paired with its successor.
    assert_eq!(
        diff_lines("npm/v1/package-lock.json", "npm/v2/package-lock.json"),
        [
            "@types/ms 0.7.34 → 2.1.0 (major)",
            "debug 4.3.4 → 4.3.7 (patch)",
            "ms 3.0.0-beta.1 → 3.0.0-beta.2 (pre-release)",
            "ms 2.1.2 → 2.1.3 (patch)",
        ]
    );
}

#[test]
fn package_lock_v1_says_to_regenerate_with_npm_7() {
    let err = Lockfile::read(&fixture("npm/lockfile-v1/package-lock.json")).unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("lockfileVersion 1") && err.contains("regenerate it with npm 7 or newer"),
        "{err}"
    );
}

#[test]
fn go_mod_with_go_sum_reads_versions_replacements_and_checksums() {
    let lock = read("go/v2/go.mod");
    assert_eq!(
        lock.files.iter().map(|f| f.format).collect::<Vec<_>>(),
        [Format::GoMod, Format::GoSum]
    );
    assert_eq!(lock.packages.len(), 7);
    let find = |name: &str| lock.packages.iter().find(|p| p.name == name).unwrap();
    assert_eq!(find("golang.org/x/net").version, "v0.33.0");
    assert!(
        find("golang.org/x/net")
            .checksum
            .as_deref()
            .unwrap()
            .starts_with("h1:")
    );
    let uuid = find("github.com/google/uuid");
    assert_eq!(uuid.source.as_deref(), Some("path+../uuid-fork"));
    assert!(
        uuid.checksum.is_none(),
        "a local replacement has no go.sum line"
    );
    // The directory reads go.mod (with go.sum); go.sum alone lists what it hashed.
    assert_eq!(Lockfile::read(&fixture("go/v2")).unwrap(), lock);
    let sum = read("go/v1/go.sum");
    assert_eq!(sum.packages.len(), 7);
    assert!(
        !sum.packages
            .iter()
            .any(|p| p.name == "github.com/stretchr/testify"),
        "listed only for its go.mod: not built"
    );
    assert_eq!(
        diff_lines("go/v1/go.mod", "go/v2/go.mod"),
        [
            "github.com/jackc/pgservicefile v0.0.0-20221227161230-091c0ba34f0a → \
             v0.0.0-20240606120523-5a60cdf6a761 (pre-release)",
            "github.com/jackc/pgx/v5 v5.5.5 → v5.7.1 (minor)",
            "golang.org/x/crypto v0.17.0 → v0.31.0 (major)",
            "golang.org/x/net v0.0.0-20231106174013-bbf3a3b7d2b5 → v0.33.0 (major)",
            "golang.org/x/text v0.14.0 → v0.21.0 (major)",
        ]
    );
    let changes = lockdiff::diff(&read("go/v1/go.mod"), &read("go/v2/go.mod"));
    assert!(
        changes.iter().all(|c| c.kind == ChangeKind::Upgraded),
        "{changes:?}"
    );
}

#[test]
fn the_example_services_releases_differ_in_jsonfast_only() {
    for (v1, v2) in [
        (
            "examples/python/releases/v1/requirements.txt",
            "examples/python/releases/v2/requirements.txt",
        ),
        (
            "examples/node/releases/v1/package-lock.json",
            "examples/node/releases/v2/package-lock.json",
        ),
        ("examples/node/releases/v1", "examples/node/releases/v2"),
    ] {
        let old = Lockfile::read(&Path::new(ROOT).join(v1)).unwrap();
        let new = Lockfile::read(&Path::new(ROOT).join(v2)).unwrap();
        let changes: Vec<String> = lockdiff::diff(&old, &new)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(changes, ["jsonfast 1.0.0 → 1.0.1 (patch)"], "{v1} → {v2}");
    }
    // The Node example's jsonfast is a local tarball, not a registry package.
    let node = Lockfile::read(&Path::new(ROOT).join("examples/node/releases/v2")).unwrap();
    let jsonfast = node.packages.iter().find(|p| p.name == "jsonfast").unwrap();
    assert_eq!(
        jsonfast.source.as_deref(),
        Some("file:../../packages/jsonfast-1.0.1.tgz")
    );
    assert!(!jsonfast.from_registry());
}

#[test]
fn release_dependency_sets_keep_the_ecosystem_and_diff_by_its_rules() {
    let old = lockdiff::release_dependencies(&read("pip/v1/requirements.txt"));
    let new = lockdiff::release_dependencies(&read("pip/v2/requirements.txt"));
    assert!(old.contains(&("PyPI:python-multipart".to_owned(), "0.0.9".to_owned())));
    let changes = lockdiff::diff_versions(
        old.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        new.iter().map(|(n, v)| (n.as_str(), v.as_str())),
    )
    .unwrap();
    let multipart = changes
        .iter()
        .find(|c| c.name == "python-multipart")
        .unwrap();
    assert_eq!(multipart.kind, ChangeKind::Upgraded);
    assert_eq!(multipart.ecosystem, Ecosystem::PyPI);
    let json = serde_json::to_value(multipart).unwrap();
    assert_eq!(json["ecosystem"], "PyPI");
    // A crate's change serialises as it always has, with no ecosystem field.
    let crate_change = lockdiff::diff_versions([("itoa", "1.0.10")], [("itoa", "1.0.11")]).unwrap();
    assert!(
        serde_json::to_value(&crate_change[0])
            .unwrap()
            .get("ecosystem")
            .is_none()
    );
}

// ---------------------------------------------------------------- OSV

fn osv_db(lock: &Lockfile) -> osv::OsvDb {
    osv::load(&Path::new(FIXTURES).join("osv"), &lock.ecosystems()).unwrap()
}

/// `ID package version fixed` of each match.
fn osv_matches(path: &str) -> Vec<String> {
    let lock = read(path);
    let mut db = osv_db(&lock);
    db.scan(&lock.packages)
        .iter()
        .map(|m| {
            format!(
                "{} {} {} fixed:{}",
                m.id,
                m.package,
                m.version,
                m.patched.join(",")
            )
        })
        .collect()
}

#[test]
fn osv_ranges_match_inside_and_not_outside_by_each_ecosystems_order() {
    // urllib3 2.2.3 is the fixed version (out); python-multipart 0.0.9 is the
    // last affected one (in).
    assert_eq!(
        osv_matches("pip/v1/requirements.txt"),
        ["WARDEN-TEST-0002 python-multipart 0.0.9 fixed:"]
    );
    // 2.2.2 is inside [2.0.0, 2.2.3); 0.0.10 is after 0.0.9 by PEP 440.
    assert_eq!(
        osv_matches("pip/v2/requirements.txt"),
        ["WARDEN-TEST-0001 urllib3 2.2.2 fixed:2.2.3"]
    );
    // A `versions` list: 2.0.0rc1 is listed, 2.0.0 is not.
    assert_eq!(
        osv_matches("uv/v1/uv.lock"),
        ["WARDEN-TEST-0003 sqlalchemy 2.0.0rc1 fixed:"]
    );
    assert!(osv_matches("uv/v2/uv.lock").is_empty());
    // npm: a pre-release range matches the top-level ms 3.0.0-beta.1, not the
    // nested ms 2.1.2.
    assert_eq!(
        osv_matches("npm/v1/package-lock.json"),
        [
            "WARDEN-TEST-0004 debug 4.3.4 fixed:4.3.6",
            "WARDEN-TEST-0005 ms 3.0.0-beta.1 fixed:3.0.0-beta.2",
        ]
    );
    assert!(osv_matches("npm/v2/package-lock.json").is_empty());
    // Go: a pseudo-version of v0.0.0 is before 0.23.0; the withdrawn advisory on
    // x/text matches nothing, and the GIT range is not evaluated.
    assert_eq!(
        osv_matches("go/v1/go.mod"),
        ["WARDEN-TEST-0006 golang.org/x/net v0.0.0-20231106174013-bbf3a3b7d2b5 fixed:0.23.0"]
    );
    assert!(osv_matches("go/v2/go.mod").is_empty());
}

#[test]
fn osv_matches_carry_aliases_summary_and_severity() {
    let lock = read("pip/v2/requirements.txt");
    let mut db = osv_db(&lock);
    let found = db.scan(&lock.packages);
    let m = &found[0];
    assert_eq!(m.aliases, ["WARDEN-TEST-ALIAS-0001"]);
    assert!(m.title.starts_with("Fictional: urllib3"));
    assert_eq!(m.severity.as_deref(), Some("high"));
    assert_eq!(m.ecosystem, Ecosystem::PyPI);
    assert_eq!(m.date, "2026-01-10");
    assert_eq!(
        m.url.as_deref(),
        Some("https://example.org/warden-test-advisories/WARDEN-TEST-0001")
    );
    // Only the ecosystems the lockfile uses are read from DIR/<ecosystem>/.
    assert_eq!(db.advisories, 3);
    assert!(db.warnings.is_empty(), "{:?}", db.warnings);
}

#[test]
fn osv_reads_any_tree_of_json_files_and_says_what_is_wrong_with_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("mirror/2026/january");
    std::fs::create_dir_all(&nested).unwrap();
    for file in ["PyPI/WARDEN-TEST-0001.json", "npm/WARDEN-TEST-0004.json"] {
        let from = Path::new(FIXTURES).join("osv").join(file);
        let name = Path::new(file).file_name().unwrap();
        std::fs::copy(from, nested.join(name)).unwrap();
    }
    let lock = read("pip/v2/requirements.txt");
    let mut db = osv::load(dir.path(), &lock.ecosystems()).unwrap();
    assert_eq!(db.advisories, 2);
    let ids: Vec<String> = db.scan(&lock.packages).into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["WARDEN-TEST-0001"]);

    std::fs::write(nested.join("broken.json"), "{ not json").unwrap();
    let err = format!(
        "{:#}",
        osv::load(dir.path(), &lock.ecosystems()).unwrap_err()
    );
    assert!(
        err.contains("broken.json") && err.contains("is not an OSV advisory"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("all.zip"), b"PK").unwrap();
    let err = format!(
        "{:#}",
        osv::load(empty.path(), &BTreeSet::new()).unwrap_err()
    );
    assert!(err.contains("unzip"), "{err}");
    let err = format!(
        "{:#}",
        osv::load(&empty.path().join("missing"), &BTreeSet::new()).unwrap_err()
    );
    assert!(err.contains("--osv-db DIR"), "{err}");
}

#[test]
fn an_unreadable_range_is_a_warning_not_a_silent_miss() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("odd.json"),
        r#"{"id": "WARDEN-TEST-0099", "summary": "Fictional: a range with a bad version",
            "affected": [{"package": {"ecosystem": "PyPI", "name": "urllib3"},
              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "not-a-version"}]}],
              "versions": ["2.2.2"]}]}"#,
    )
    .unwrap();
    let lock = read("pip/v2/requirements.txt");
    let mut db = osv::load(dir.path(), &lock.ecosystems()).unwrap();
    let found = db.scan(&lock.packages);
    assert_eq!(found.len(), 1, "still matched by its versions list");
    assert_eq!(db.warnings.len(), 1);
    assert!(
        db.warnings[0].starts_with("WARDEN-TEST-0099: "),
        "{:?}",
        db.warnings
    );
}
