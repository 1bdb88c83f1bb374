//! `keyward backup ...` as the platform would use it: a backup of a running cluster deleted; the
//! cluster deleted, its kept backup listed (`backup retained`), restored into a new cluster
//! (`backup restore-retained`) whose document reads back, then deleted (`backup rm-retained`).

use std::time::{Duration, Instant};

use crate::up::Up;

const WAIT: Duration = Duration::from_secs(60);

/// `doc get` of `name` from `cluster`, retried until the cluster serves it.
fn wait_document(up: &Up, cluster: &str, name: &str) -> Vec<u8> {
    let out = up.data_dir.with_file_name(format!("{cluster}.out"));
    let started = Instant::now();
    loop {
        let (ok, _, err) = up.keyward(&["doc", "get", cluster, name, "-o", out.to_str().unwrap()]);
        if ok {
            return std::fs::read(&out).unwrap();
        }
        assert!(
            started.elapsed() < WAIT,
            "{cluster} does not serve {name}: {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_deleted_clusters_backup_is_listed_restored_and_deleted_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"), &["--disk-size", "4M"]);
    let cluster = up.keyward_json(&["cluster", "create", "prod", "--encryption", "internal"]);
    let id = cluster["id"].as_str().unwrap().to_owned();
    let file = dir.path().join("q1.txt");
    std::fs::write(&file, b"kept past the cluster").unwrap();
    let started = Instant::now();
    loop {
        let (ok, _, err) = up.keyward(&[
            "doc",
            "put",
            &id,
            "q1.txt",
            "--file",
            file.to_str().unwrap(),
        ]);
        if ok {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the cluster does not take documents: {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let kept = up.keyward_json(&["backup", "create", &id])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dropped = up.keyward_json(&["backup", "create", &id])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, out, err) = up.keyward(&["backup", "rm", &id, &dropped]);
    assert!(ok && out.contains(&dropped), "backup rm: {err}");
    let listed = up.keyward_json(&["backup", "list", &id]);
    let ids: Vec<&str> = listed["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [kept.as_str()]);

    let (ok, _, err) = up.keyward(&["cluster", "delete", &id]);
    assert!(ok, "cluster delete: {err}");
    let retained = up.keyward_json(&["backup", "retained"]);
    let backups = retained["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{retained:#}");
    assert_eq!(backups[0]["id"], kept.as_str());
    assert_eq!(backups[0]["cluster_id"], id.as_str());
    let (ok, out, _) = up.keyward(&["backup", "retained"]);
    assert!(ok && out.contains(&kept) && out.contains(&id), "{out}");

    let restored = up.keyward_json(&["backup", "restore-retained", &kept]);
    let restored_id = restored["id"].as_str().unwrap().to_owned();
    assert_ne!(restored_id, id);
    assert_ne!(
        restored["key_arn"], cluster["key_arn"],
        "a platform key of its own"
    );
    assert_eq!(
        wait_document(&up, &restored_id, "q1.txt"),
        b"kept past the cluster"
    );

    let (ok, _, err) = up.keyward(&["backup", "rm-retained", &kept]);
    assert!(ok, "backup rm-retained: {err}");
    assert_eq!(
        up.keyward_json(&["backup", "retained"])["backups"],
        serde_json::json!([])
    );
    let (ok, _, err) = up.keyward(&["backup", "rm-retained", &kept]);
    assert!(!ok && err.contains("not_found (404)"), "{err}");
}
