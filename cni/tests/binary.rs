//! The binary's contract that needs neither root nor a daemon: VERSION, error objects on
//! stdout with a non-zero exit, and no panic on odd input.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

fn run(env: &[(&str, &str)], stdin: &[u8]) -> (i32, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podswitch-cni"));
    cmd.env_clear().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    // VERSION does not read stdin; a closed pipe is fine.
    let _ = input.write_all(stdin);
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "panic: {out:?}");
    (out.status.code().unwrap_or(-1), serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn version() {
    let (code, v) = run(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(code, 0);
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["supportedVersions"], serde_json::json!(["0.3.1", "0.4.0", "1.0.0", "1.1.0"]));
}

/// Environment, stdin, expected error code.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], u64);

#[test]
fn errors_are_json_on_stdout_with_a_failing_exit() {
    let conf = br#"{"cniVersion":"1.0.0","name":"podswitch","type":"podswitch-cni","socket":"/nonexistent/s.sock"}"#;
    let cases: &[Case] = &[
        (&[], b"", 4),
        (&[("CNI_COMMAND", "FROB")], b"", 4),
        (&[("CNI_COMMAND", "ADD")], b"not json", 6),
        (&[("CNI_COMMAND", "ADD")], &[0xff, 0xfe, 0x00], 6),
        (&[("CNI_COMMAND", "ADD")], br#"{"cniVersion":"0.2.0","name":"n","type":"t"}"#, 1),
        (&[("CNI_COMMAND", "ADD")], br#"{"cniVersion":"1.0.0","type":"t"}"#, 7),
        (&[("CNI_COMMAND", "ADD")], conf, 4),
        (
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/x"),
                ("CNI_ARGS", "junk"),
            ],
            conf,
            4,
        ),
        (&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c"), ("CNI_IFNAME", "eth0")], conf, 11),
        (&[("CNI_COMMAND", "STATUS")], conf, 50),
    ];
    for (env, stdin, want) in cases {
        let (code, v) = run(env, stdin);
        assert_eq!(code, 1, "{env:?}");
        assert_eq!(v["cniVersion"], "1.0.0", "{env:?}: {v}");
        assert_eq!(v["code"].as_u64(), Some(*want), "{env:?}: {v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
}
