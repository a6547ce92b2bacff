//! README.md's examples, run as a reader would run them: every `curl` command of an
//! indented code block (a line indented by exactly four spaces, continued by trailing
//! backslashes) runs in bash against the demo (`pgrest` with no db-uri), in README order,
//! and must answer the status its comment claims (`# → 201`), and the headers it claims
//! (`# → 206, Content-Range: 0-2/8`). `export NAME=value` lines set the demo's and the
//! following commands' environment; `NAME=$(...)` lines (a token) set a variable for the
//! commands after them. So the README cannot rot without this test failing.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const README: &str = include_str!("../README.md");
/// The address the README's examples are written against; the test substitutes the demo's.
const README_ADDRESS: &str = "localhost:3000";

#[derive(Debug, PartialEq)]
enum Step {
    /// `export NAME=value`
    Export(String, String),
    /// `NAME=$(command)`: the whole line, run by bash.
    Assign(String, String),
    Curl(Example),
}

#[derive(Debug, PartialEq)]
struct Example {
    /// 1-based line in README.md where the command starts.
    line: usize,
    command: String,
    status: u16,
    /// Claimed headers: the answer's value must be this one, or start with it and `;`.
    headers: Vec<(String, String)>,
}

/// Splits a shell line into the command and its comment (text after a `#` that starts a
/// word outside quotes), as bash reads it.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let (mut single, mut double, mut previous) = (false, false, ' ');
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => {
                return (line[..i].trim_end(), Some(line[i + 1..].trim()));
            }
            _ => {}
        }
        previous = c;
    }
    (line.trim_end(), None)
}

/// `→ 206, Content-Range: 0-2/8: prose` into the status and the claimed headers.
fn parse_claim(comment: &str) -> Option<(u16, Vec<(String, String)>)> {
    let rest = comment.strip_prefix('→')?.trim_start();
    let status = rest.get(..3)?.parse().ok()?;
    let mut headers = Vec::new();
    let mut rest = &rest[3..];
    while let Some(claim) = rest.strip_prefix(", ") {
        let (name, after) = claim.split_once(": ")?;
        let end = after.find([' ', ',', ':']).unwrap_or(after.len());
        headers.push((name.to_string(), after[..end].to_string()));
        rest = &after[end..];
    }
    (rest.is_empty() || rest.starts_with(':')).then_some((status, headers))
}

/// The steps of README's code blocks, in order; panics on a `curl` line without a claim.
fn readme_steps(readme: &str) -> Vec<Step> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let Some(first) = lines[i]
            .strip_prefix("    ")
            .filter(|l| !l.starts_with(' '))
        else {
            i += 1;
            continue;
        };
        let mut text = first.to_string();
        while text.ends_with('\\') && i + 1 < lines.len() {
            text.pop();
            i += 1;
            text.push_str(lines[i].trim_start());
        }
        i += 1;
        let (command, comment) = split_comment(&text);
        if command.starts_with("curl ") {
            let (status, headers) = comment.and_then(parse_claim).unwrap_or_else(|| {
                panic!(
                    "README.md:{}: a curl example needs a claimed status (`# → 200`): {text}",
                    start + 1
                )
            });
            steps.push(Step::Curl(Example {
                line: start + 1,
                command: command.to_string(),
                status,
                headers,
            }));
        } else if let Some((name, value)) = command
            .strip_prefix("export ")
            .and_then(|a| a.split_once('='))
        {
            steps.push(Step::Export(name.to_string(), value.to_string()));
        } else if let Some((name, _)) = command
            .split_once("=$(")
            .filter(|(n, _)| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        {
            steps.push(Step::Assign(name.to_string(), command.to_string()));
        }
    }
    steps
}

#[test]
fn the_readme_parser_reads_claims_continuations_and_comments() {
    let readme = "text\n\n    export S=abc  # here\n    T=$(pgrest token --role r)\n    \
                  curl 'localhost:3000/a#b' -H \"X: $T\" \\\n         -d '{}'  # → 206, \
                  Content-Range: 0-2/8, Content-Type: text/csv: prose, more\n     curl nested\n";
    assert_eq!(
        readme_steps(readme),
        vec![
            Step::Export("S".into(), "abc".into()),
            Step::Assign("T".into(), "T=$(pgrest token --role r)".into()),
            Step::Curl(Example {
                line: 5,
                command: "curl 'localhost:3000/a#b' -H \"X: $T\" -d '{}'".into(),
                status: 206,
                headers: vec![
                    ("Content-Range".into(), "0-2/8".into()),
                    ("Content-Type".into(), "text/csv".into())
                ],
            }),
        ]
    );
    assert_eq!(parse_claim("→ 200: rows"), Some((200, vec![])));
    assert_eq!(parse_claim("→ 2x0"), None);
    assert_eq!(parse_claim("all rows"), None);
    let missing = std::panic::catch_unwind(|| readme_steps("    curl 'x'  # all rows\n"));
    assert!(missing.is_err(), "a curl line without a claim is refused");
}

/// The demo started as README starts it, with README's exports, on a free port.
struct Demo {
    child: Child,
    port: u16,
}

impl Demo {
    fn start(env: &BTreeMap<String, String>) -> Demo {
        let port = pgrest::pgcluster::free_port().expect("free port");
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgrest"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .env("PGRST_SERVER_HOST", "127.0.0.1")
            .env("PGRST_SERVER_PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run pgrest");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        for line in stdout.by_ref() {
            let line = line.unwrap();
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
        assert!(
            banner.contains(&format!("serving http://127.0.0.1:{port} ")),
            "the demo did not start:\n{banner}"
        );
        // The request log goes to stdout: keep reading it so the pipe never fills.
        std::thread::spawn(move || stdout.for_each(drop));
        Demo { child, port }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// bash with `env` and the directory of the pgrest under test first on PATH.
fn bash(script: &str, env: &BTreeMap<String, String>) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_pgrest")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .args(["-c", script])
        .env_clear()
        .env("PATH", path)
        .envs(env)
        .output()
        .expect("run bash")
}

fn run_example(example: &Example, port: u16, env: &BTreeMap<String, String>) {
    let Example { line, command, .. } = example;
    assert!(
        command.contains(README_ADDRESS),
        "README.md:{line}: not against the demo's {README_ADDRESS}: {command}"
    );
    let command = command.replace(README_ADDRESS, &format!("127.0.0.1:{port}"));
    let (body, head) = (out_dir().join("body"), out_dir().join("headers"));
    let script = format!(
        "{command} -sS -o '{}' -D '{}' -w '%{{http_code}}'",
        body.display(),
        head.display()
    );
    let out = bash(&script, env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let body = std::fs::read_to_string(&body).unwrap_or_default();
    let head = std::fs::read_to_string(&head).unwrap_or_default();
    let context = format!(
        "README.md:{line}: {command}\n{}{head}{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "curl failed: {context}");
    assert_eq!(
        stdout.parse::<u16>().ok(),
        Some(example.status),
        "{context}"
    );
    for (name, claimed) in &example.headers {
        let value = head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        });
        let matches = value.as_deref().is_some_and(|v| {
            v == claimed
                || v.strip_prefix(claimed.as_str())
                    .is_some_and(|r| r.starts_with(';'))
        });
        assert!(matches, "{name}: {value:?} is not {claimed:?}: {context}");
    }
}

/// Runs `NAME=$(...)` in bash (README's `target/release/pgrest` is the binary under test)
/// and returns NAME's value.
fn assign(name: &str, line: &str, env: &BTreeMap<String, String>) -> String {
    let line = line.replace("target/release/pgrest", env!("CARGO_BIN_EXE_pgrest"));
    let out = bash(&format!("{line} && printf %s \"${name}\""), env);
    let value = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !value.is_empty(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    value
}

#[test]
fn every_readme_curl_example_answers_what_it_claims() {
    let steps = readme_steps(README);
    let examples = steps.iter().filter(|s| matches!(s, Step::Curl(_))).count();
    assert!(
        examples >= 30,
        "only {examples} curl examples found in README.md"
    );
    // README exports (the jwt-secret) before it starts the demo; the demo gets them all.
    let mut env: BTreeMap<String, String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Export(name, value) => Some((name.clone(), value.clone())),
            _ => None,
        })
        .collect();
    let demo = Demo::start(&env);
    for step in &steps {
        match step {
            Step::Export(..) => {}
            Step::Assign(name, line) => {
                let value = assign(name, line, &env);
                env.insert(name.clone(), value);
            }
            Step::Curl(example) => run_example(example, demo.port, &env),
        }
    }
}
