//! Terminals: `create --console-socket` with `process.terminal`, the pty master
//! received over SCM_RIGHTS (like runc's recvtty), and `exec --tty`.

use std::time::Duration;

use corral_tests::{runtime_for, Bundle, ConsoleReceiver};

const T: Duration = Duration::from_secs(20);

#[test]
fn create_with_console_socket() {
    let Some(rt) = runtime_for("tty-create") else {
        return;
    };
    let mut b = Bundle::new();
    b.terminal(true).sh("tty; echo fds=$(readlink /proc/1/fd/0) $(readlink /proc/1/fd/1) $(readlink /proc/1/fd/2); echo hello-from-pty; exit 0");
    let recv = ConsoleReceiver::listen(&rt.scratch("tty"), b"", T);
    let sock = recv.socket().to_string_lossy().into_owned();
    let id = rt.id();
    rt.create_with(&id, &b, &["--console-socket", &sock])
        .assert_ok();
    rt.start(&id).assert_ok();
    let cap = recv
        .wait()
        .unwrap_or_else(|e| panic!("console: {e}; runtime stderr {:?}", rt.output_err(&id)));
    let out = cap.output.replace('\r', "");
    assert!(
        out.contains("/dev/pts/0\n"),
        "tty in the container is not /dev/pts/0: {out:?}"
    );
    assert!(
        out.contains("fds=/dev/pts/0 /dev/pts/0 /dev/pts/0"),
        "stdio not on the pty: {out:?}"
    );
    assert!(out.contains("hello-from-pty"), "{out:?}");
    assert!(rt.wait_status(&id, "stopped", T));
}

#[test]
fn console_carries_input() {
    let Some(rt) = runtime_for("tty-input") else {
        return;
    };
    let mut b = Bundle::new();
    b.terminal(true)
        .sh("stty -echo; read line; echo got-$line; exit 0");
    let recv = ConsoleReceiver::listen(&rt.scratch("tty"), b"ping\n", T);
    let sock = recv.socket().to_string_lossy().into_owned();
    let id = rt.id();
    rt.create_with(&id, &b, &["--console-socket", &sock])
        .assert_ok();
    rt.start(&id).assert_ok();
    let cap = recv.wait().unwrap_or_else(|e| panic!("console: {e}"));
    assert!(
        cap.output.contains("got-ping"),
        "input written to the pty master did not reach the process: {:?}",
        cap.output
    );
}

#[test]
fn terminal_process_is_session_leader_with_controlling_tty() {
    let Some(rt) = runtime_for("tty-ctty") else {
        return;
    };
    let mut b = Bundle::new();
    // Field 7 of /proc/self/stat is tty_nr (non-zero with a controlling tty); a
    // session leader has sid == pid. The shell is pid 1.
    b.terminal(true)
        .sh("set -- $(cat /proc/1/stat); echo sid=$6 tty=$7; exit 0");
    let recv = ConsoleReceiver::listen(&rt.scratch("tty"), b"", T);
    let sock = recv.socket().to_string_lossy().into_owned();
    let id = rt.id();
    rt.create_with(&id, &b, &["--console-socket", &sock])
        .assert_ok();
    rt.start(&id).assert_ok();
    let cap = recv.wait().unwrap_or_else(|e| panic!("console: {e}"));
    let line = cap
        .output
        .lines()
        .find(|l| l.starts_with("sid="))
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        line.starts_with("sid=1 "),
        "pid 1 is not a session leader: {line:?}"
    );
    assert!(
        !line.ends_with("tty=0"),
        "no controlling terminal: {line:?}"
    );
}

#[test]
fn terminal_without_console_socket_is_refused() {
    let Some(rt) = runtime_for("tty-nosock") else {
        return;
    };
    let mut b = Bundle::new();
    b.terminal(true).args(&["true"]);
    let id = rt.id();
    let out = rt.create(&id, &b);
    out.assert_fail();
    if rt.is_corral() {
        let msg = format!("{}{}", out.stderr, rt.log());
        assert!(
            msg.contains("console-socket") || msg.contains("console socket"),
            "error should mention --console-socket: {msg}"
        );
    }
    let left = rt.leftovers(&id);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn exec_with_tty() {
    let Some(rt) = runtime_for("tty-exec") else {
        return;
    };
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let recv = ConsoleReceiver::listen(&rt.scratch("tty"), b"", T);
    let sock = recv.socket().to_string_lossy().into_owned();
    let out = rt.exec(
        &id,
        &[
            "--tty",
            "--console-socket",
            &sock,
            "-d",
            "--",
            "sh",
            "-c",
            "tty; echo exec-pty-ok",
        ],
    );
    out.assert_ok();
    let cap = recv.wait().unwrap_or_else(|e| panic!("console: {e}"));
    let text = cap.output.replace('\r', "");
    assert!(
        text.contains("/dev/pts/"),
        "exec --tty did not get a pty: {text:?}"
    );
    assert!(text.contains("exec-pty-ok"), "{text:?}");
}
