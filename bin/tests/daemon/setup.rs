//! The daemon's socket and configuration: a private socket, unsafe paths and other users
//! refused, a runtime that cannot start, and configuration files refused with their lines
//! escaped.

use super::*;

#[test]
fn the_socket_is_private_and_unsafe_paths_are_refused() {
    let daemon = Daemon::start(&[]);
    let socket_meta = std::fs::metadata(&daemon.socket).unwrap();
    assert!(socket_meta.file_type().is_socket());
    assert_eq!(socket_meta.mode() & 0o777, 0o600);
    let dir_meta = std::fs::metadata(daemon.socket.parent().unwrap()).unwrap();
    assert_eq!(dir_meta.mode() & 0o777, 0o700);
    // A second daemon on a live socket is refused.
    let second = serve_at(daemon.dir.path(), &daemon.socket);
    assert!(second.contains("already listening"), "{second}");
    daemon.stop();

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let target = dir.path().join("target-file");
    std::fs::write(&target, b"keep me").unwrap();
    let link = run.join("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(serve_at(dir.path(), &link).contains("symlink"));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me", "nothing changed through the link");
    let file = run.join("file.sock");
    std::fs::write(&file, b"x").unwrap();
    assert!(serve_at(dir.path(), &file).contains("regular file"));
    assert!(file.exists());
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(serve_at(dir.path(), &open.join("ctl.sock")).contains("mode 0700"));
    if is_root() {
        // A socket of another user (root can make one to test with).
        let foreign = run.join("foreign.sock");
        drop(std::os::unix::net::UnixListener::bind(&foreign).unwrap());
        std::os::unix::fs::chown(&foreign, Some(65_534), Some(65_534)).unwrap();
        assert!(serve_at(dir.path(), &foreign).contains("uid 65534"));
        assert!(foreign.exists());
        // A directory reached through a link another user owns, and could re-point: refused
        // for the link before the directory (too open, which it also is) is looked at.
        let planted = dir.path().join("planted");
        std::os::unix::fs::symlink(&open, &planted).unwrap();
        std::os::unix::fs::lchown(&planted, Some(65_534), Some(65_534)).unwrap();
        let refused = serve_at(dir.path(), &planted.join("ctl.sock"));
        assert!(refused.contains("a symlink of uid 65534"), "{refused}");
    }
}

#[test]
fn a_client_refuses_a_daemon_of_another_user() {
    if !is_root() {
        // Only root can start a daemon as another user to test with.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pack = pack(dir.path());
    let home = dir.path().join("nobody");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65_534), Some(65_534)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o644)).unwrap();
    let socket = home.join("run").join("ctl.sock");
    let child = Command::new(BIN)
        .args(["serve", "--pack"])
        .arg(&pack)
        .arg("--socket")
        .arg(&socket)
        .uid(65_534)
        .gid(65_534)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let daemon = Daemon::listening(child, dir, socket);
    let out = daemon.ctl(&["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not of this user"), "refused by the client, not the daemon: {err}");
}

#[test]
fn a_connection_from_another_user_is_closed_before_a_byte_is_read() {
    if !is_root() {
        // Only root can run a client as another user; the check still runs for every
        // connection in every other test.
        return;
    }
    let daemon = Daemon::start(&[]);
    // Opened up on purpose so that another user can reach the socket at all.
    std::fs::set_permissions(
        daemon.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o711),
    )
    .unwrap();
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(BIN)
        .args(["status", "--socket"])
        .arg(&daemon.socket)
        .uid(65_534)
        .gid(65_534)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no answer reaches another user: {out:?}");
    daemon.status_works();
    std::fs::set_permissions(
        daemon.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    daemon.stop();
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Starts a daemon at `socket` expecting a refusal; returns its error output.
fn serve_at(dir: &Path, socket: &Path) -> String {
    serve_refused(dir, socket, &[])
}

/// Starts a daemon at `socket` with `extra` arguments, expecting a refusal; returns its error
/// output.
fn serve_refused(dir: &Path, socket: &Path, extra: &[&str]) -> String {
    let pack = dir.join("refused.pack");
    if !pack.exists() {
        let mut writer = PackWriter::create(&pack).unwrap();
        writer.add("blob:x", &blob(b"x"), Codec::None, vec![]).unwrap();
        writer.finish().unwrap();
    }
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--socket")
        .arg(socket)
        .arg("--pack")
        .arg(&pack)
        .args(extra)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the daemon refuses {}", socket.display());
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_daemon_whose_runtime_cannot_start_leaves_no_socket_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("ctl.sock");
    let log = dir.path().join("no such folder").join("session.log");
    let err = serve_refused(dir.path(), &socket, &["--record", log.to_str().unwrap()]);
    assert!(err.contains("starting the runtime"), "{err}");
    assert!(!socket.exists(), "the socket file is removed");
}

#[test]
fn a_configuration_error_keeps_its_lines_and_escapes_what_else_the_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "workerz = 3\n").unwrap();
    let socket = dir.path().join("s.sock");
    let err = serve_refused(dir.path(), &socket, &["--config", config.to_str().unwrap()]);
    let lines: Vec<&str> = err.lines().collect();
    let field = lines.iter().position(|l| l.ends_with("workerz = 3"));
    let field = field.unwrap_or_else(|| panic!("the field's line: {err}"));
    assert!(lines[field + 1].ends_with("^^^^^^^"), "the caret under the field: {err}");
    // A key the file holds with an escape sequence reaches the terminal escaped.
    std::fs::write(&config, "\"x\u{1b}[2J\" = 3\n").unwrap();
    let err = serve_refused(dir.path(), &socket, &["--config", config.to_str().unwrap()]);
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn a_configuration_that_is_not_a_regular_file_or_is_too_large_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let refused =
        |config: &Path| serve_refused(dir.path(), &socket, &["--config", config.to_str().unwrap()]);
    // A named pipe with no writer: refused at once, not waited on.
    let fifo = dir.path().join("config.fifo");
    let owner_rw = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, owner_rw).expect("mkfifo");
    let err = refused(&fifo);
    assert!(err.contains("not a regular file"), "{err}");
    assert!(refused(dir.path()).contains("not a regular file"));
    // One line over the limit: refused by its size, and no part of it echoed.
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, format!("workers = {}\n", "9".repeat(1 << 20))).unwrap();
    let err = refused(&huge);
    assert!(err.contains("over the 1048576-byte limit") && err.len() < 1_000, "{}", err.len());
    // Just under it: parsed, and the parser's quote of the line is cut.
    std::fs::write(&huge, format!("workers = {}\n", "9".repeat(1_000_000))).unwrap();
    let err = refused(&huge);
    assert!(err.contains("parsing the configuration") && err.len() < 10_000, "{}", err.len());
}

#[test]
fn a_line_break_in_a_name_an_error_shows_cannot_forge_a_line_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("missing\nstreamctl: all is well");
    let out = Command::new(BIN).args(["pack", "ls"]).arg(&pack).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line, its break escaped: {err:?}");
    assert!(err.starts_with("streamctl: ") && err.contains(r"missing\nstreamctl: all"), "{err:?}");
    // A configuration's parse error keeps its lines, each indented under the first.
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "workerz = 3\n").unwrap();
    let socket = dir.path().join("s.sock");
    let err = serve_refused(dir.path(), &socket, &["--config", config.to_str().unwrap()]);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() > 1 && lines[1..].iter().all(|l| l.starts_with("  ")), "{err}");
}
