//! The console in a real browser: `keyward up` as a child, and `console-tests/guide.mjs` — Node
//! driving Debian's headless Chromium with playwright-core — walking the guide in the console's
//! pages, with the aws CLI as the customer: sign in, create an external cluster, copy the policy,
//! create the key, apply it, the validation report, the four classes encrypted, a document up and
//! down, the key disabled and enabled again (seen without reload within two probe intervals), bad
//! input beside its field with nothing created, another organization's cluster not found, forged
//! changes without the CSRF token refused, axe-core's accessibility check at desktop and 360 px.
//!
//! Node, Chromium and the script's npm packages are required: the test fails without them
//! (`scripts/test` installs them). The screenshots go to a temporary directory, or to
//! `$KEYWARD_SCREENSHOTS` (`scripts/screenshots` points it at `docs/console`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::{repo_root, require_tool, run_with_deadline};
use crate::up::Up;

/// The Chromium the script drives: `$CHROMIUM`, else `chromium` on PATH (Debian's package).
fn chromium() -> PathBuf {
    match std::env::var_os("CHROMIUM") {
        Some(path) => PathBuf::from(path),
        None => require_tool("chromium"),
    }
}

#[test]
fn the_console_walks_the_guide_in_headless_chromium() {
    let node = require_tool("node");
    require_tool("aws");
    let chromium = chromium();
    assert!(chromium.is_file(), "no Chromium at {}", chromium.display());
    let tests = repo_root().join("console-tests");
    assert!(
        tests.join("node_modules/playwright-core").is_dir()
            && tests.join("node_modules/axe-core").is_dir(),
        "console-tests/node_modules is missing: run `npm ci` in console-tests (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(
        &dir.path().join("keyward-data"),
        &["--probe-interval", "3s", "--disk-size", "4M"],
    );
    let shots = match std::env::var_os("KEYWARD_SCREENSHOTS") {
        Some(path) => PathBuf::from(path),
        None => dir.path().join("screenshots"),
    };
    let mut command = Command::new(node);
    command
        .arg(tests.join("guide.mjs"))
        .current_dir(&tests)
        .env("KEYWARD_UP_JSON", up.data_dir.join("up.json"))
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &shots);
    let (status, out, err) = run_with_deadline(&mut command, Duration::from_secs(600));
    eprintln!("{out}{err}");
    assert!(status.success(), "the browser walk failed: {err}");
    assert!(out.contains("console-guide: passed"), "{out}");
    for name in [
        "01-sign-in",
        "06-verified",
        "08-key-inaccessible",
        "14-cluster-360px",
    ] {
        assert!(shots.join(format!("{name}.png")).is_file(), "{name}.png");
    }
}
