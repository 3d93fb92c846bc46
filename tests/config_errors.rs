//! Bad configs: each file in `tests/bad-configs/` starts with `# expect: <text>`; `podswitchd
//! --check-config` must reject it with exit code 2 and a message naming the file, a line and
//! that text. The example configs must pass.

use podswitch_tests::{root, run_daemon};

#[test]
fn bad_configs_are_rejected_precisely() {
    let dir = root().join("tests/bad-configs");
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks '# expect: '", path.display()));
        let r = run_daemon(&["--check-config", path.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{}: exit {} stdout {} stderr {}", path.display(), r.code, r.stdout, r.stderr);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(r.stderr.contains(name), "{name}: error does not name the file: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{name}: expected '{expect}' in: {}", r.stderr);
        let line_part = r.stderr.split(':').nth(1).unwrap_or("");
        assert!(line_part.trim().parse::<usize>().is_ok(), "{name}: no line number in: {}", r.stderr);
        n += 1;
    }
    assert!(n >= 15, "corpus has only {n} files");
}

#[test]
fn example_configs_are_valid() {
    for f in ["configs/node-pcap.toml", "configs/node-pcap-geneve.toml"] {
        let r = run_daemon(&["--check-config", root().join(f).to_str().unwrap()]);
        assert_eq!(r.code, 0, "{f}: {}", r.stderr);
        assert!(r.stdout.contains("valid"));
    }
}

/// The example manifests in `configs/k8s/` are read without errors or warnings.
#[test]
fn example_manifests_parse_cleanly() {
    let dir = podswitch_tests::root().join("configs/k8s");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("configs/k8s") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            // configs/k8s/seed/: the seed's manifests need the allocators (tests/allocators.rs).
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read");
        let parsed = control::k8s::parse(
            control::k8s::Format::Yaml,
            &p.display().to_string(),
            &text,
            "node-1",
            control::k8s::Validation::Strict,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!parsed.objects.is_empty() && parsed.warnings.is_empty(), "{}: {:?}", p.display(), parsed.warnings);
        n += 1;
    }
    assert!(n >= 2);
}
