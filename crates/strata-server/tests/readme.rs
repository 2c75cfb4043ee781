//! The README's "Use it" section, run as a newcomer runs it: the server is started as "Run it"
//! says, in a fresh directory, then every `sh` block of "Use it" is run in order in one bash
//! session, and each command's output is checked against the `#>` lines the README shows after
//! it. A command the README shows no answer for must print nothing.
//!
//! Two things differ from a newcomer's terminal, both so that the test can run beside others:
//! the server listens on a free port rather than 7878 (`localhost:7878` in a command becomes that
//! port, and `STRATA_SERVER` points the inspection commands at it), and `scripts/strata`, which
//! builds and runs the release binary, is the binary cargo built for this test.
//!
//! In an expected line, `...` stands for any text, including none; expected lines must appear in
//! the output in the order shown, other output lines may come between them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const README: &str = include_str!("../../../README.md");

/// One command of a block, with the answer the README shows for it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The `sh` blocks of the section whose heading is `## {title}`.
fn blocks(title: &str) -> Vec<String> {
    let heading = format!("## {title}\n");
    let start = README.find(&heading).unwrap_or_else(|| panic!("README has no {heading:?}")) + heading.len();
    let section = &README[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut out = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let info_end = after.find('\n').expect("a fence line ends");
        let info = after[..info_end].trim();
        let body = &after[info_end + 1..];
        let close = body.find("```").expect("every fence is closed");
        if info == "sh" {
            out.push(body[..close].to_string());
        }
        rest = &body[close + 3..];
    }
    out
}

fn steps(block: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = block.lines();
    while let Some(line) = lines.next() {
        if let Some(answer) = line.strip_prefix("#>") {
            let step = steps.last_mut().unwrap_or_else(|| panic!("answer {line:?} follows no command"));
            step.expected.push(answer.strip_prefix(' ').unwrap_or(answer).to_string());
            continue;
        }
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut command = line.to_string();
        while command.ends_with('\\') {
            let next = lines.next().unwrap_or_else(|| panic!("{command:?} continues past its block"));
            command.push('\n');
            command.push_str(next);
        }
        steps.push(Step { command, expected: Vec::new() });
    }
    steps
}

/// Whether `line` matches `pattern`, where `...` in the pattern stands for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || line.len() < first.len() + last.len() || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the expected lines appear in the output in order.
fn answer_holds(expected: &[String], output: &str) -> bool {
    if expected.is_empty() {
        return output.trim().is_empty();
    }
    let mut lines = output.lines();
    expected.iter().all(|e| lines.any(|l| matches(e, l)))
}

struct Running {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn start_server(dir: &Path, port: u16) -> Running {
    let run = blocks("Run it");
    let serve: Vec<Step> = run.iter().flat_map(|b| steps(b)).collect();
    assert_eq!(serve.len(), 1, "\"Run it\" shows one command: {serve:?}");
    assert_eq!(serve[0].command, "scripts/strata serve", "the run command the test starts");
    let log = dir.join("server.log");
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--http-addr", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env_remove("STRATA_ADMIN_TOKEN")
        .env("STRATA_LOG", "info")
        .env("STRATA_OTLP_GRPC_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let running = Running { child, log };
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(format!("http://127.0.0.1:{port}/readyz")).timeout(Duration::from_secs(2)).send();
        if ready.is_ok_and(|r| r.status() == 200) {
            return running;
        }
        assert!(Instant::now() < deadline, "server not ready:\n{}", running.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_readme_parser_reads_commands_and_answers() {
    let s = steps("# a comment\nA=1\ncurl -s x \\\n  -d y\n#> {\"a\":...}\n#> \n\necho\n");
    assert_eq!(s.len(), 3);
    assert_eq!(s[1].command, "curl -s x \\\n  -d y");
    assert_eq!(s[1].expected, ["{\"a\":...}", ""]);
    assert!(s[0].expected.is_empty() && s[2].expected.is_empty());
    assert!(matches("{\"a\":...,\"b\":...}", "{\"a\":1,\"c\":2,\"b\":3}"));
    assert!(matches("...", ""));
    assert!(!matches("{\"a\":...}x", "{\"a\":1}"));
    assert!(!matches("a...a", "a"));
    assert!(answer_holds(&["x...".into(), "z".into()], "x1\ny\nz\n"));
    assert!(!answer_holds(&["z".into(), "x...".into()], "x1\ny\nz\n"), "order counts");
    assert!(!answer_holds(&[], "an error\n"), "a command shown without an answer prints nothing");
}

#[test]
fn use_it_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_strata"), dir.path().join("scripts/strata")).unwrap();
    let server = start_server(dir.path(), port);

    let steps: Vec<Step> = blocks("Use it").iter().flat_map(|b| steps(b)).collect();
    assert!(steps.len() >= 10, "\"Use it\" has its commands: {steps:?}");
    // What a command prints to stderr is part of its answer, as on a terminal.
    let mut script = String::from("exec 2>&1\n");
    for (i, step) in steps.iter().enumerate() {
        script.push_str(&step.command.replace("localhost:7878", &format!("127.0.0.1:{port}")));
        script.push_str(&format!("\necho; echo '@@step {i}@@'\n"));
    }
    std::fs::write(dir.path().join("readme.sh"), &script).unwrap();
    let mut bash = Command::new("bash")
        .args(["--noprofile", "--norc", "readme.sh"])
        .current_dir(dir.path())
        .env_remove("STRATA_ADMIN_TOKEN")
        .env_remove("STRATA_DATA_DIR")
        .env("STRATA_SERVER", format!("http://127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while bash.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = bash.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = bash.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    let mut rest: &str = &stdout;
    for (i, step) in steps.iter().enumerate() {
        let marker = format!("@@step {i}@@\n");
        let Some(end) = rest.find(&marker) else {
            panic!(
                "the README stopped at command {i}:\n{}\noutput so far:\n{rest}\nstderr:\n{stderr}\nserver:\n{}",
                step.command,
                server.log()
            );
        };
        let output = &rest[..end];
        rest = &rest[end + marker.len()..];
        assert!(
            answer_holds(&step.expected, output),
            "README command {i}:\n{}\nshows:\n{}\nbut answered:\n{output}\nstderr:\n{stderr}\nserver:\n{}",
            step.command,
            step.expected.join("\n"),
            server.log()
        );
    }
}
