//! Running a plugin out of process: one `harmony plugin-host` child per plugin, spoken to
//! over a pipe, killed on a time-out and started again with backoff after any failure.

use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::native::{CallKind, Outcome};
use super::protocol::{self, read_frame_async, write_frame_async};
use super::{CallContext, CallError};

/// How to start the child.
#[derive(Debug, Clone)]
pub struct ChildCommand {
    pub executable: PathBuf,
    pub library: PathBuf,
    pub sha256: String,
    pub memory_limit_mb: u64,
}

/// A running child and its pipe.
struct Running {
    process: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

struct Slot {
    child: Option<Running>,
    /// A call was sent and its answer not read: the caller gave up (its request was
    /// cancelled) mid-exchange, so the pipe may still hold that answer.
    dirty: bool,
    /// Consecutive failures: the next start waits `BACKOFF_BASE * 2^(failures-1)`.
    failures: u32,
    retry_at: Option<Instant>,
}

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One plugin's child process. Calls are served one at a time, in arrival order.
pub struct ProcessRunner {
    name: String,
    command: ChildCommand,
    timeout: Duration,
    slot: Mutex<Slot>,
    starts: AtomicU64,
}

impl std::fmt::Debug for ProcessRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRunner")
            .field("name", &self.name)
            .finish()
    }
}

impl ProcessRunner {
    /// Starts the child and returns the runner with the manifest the plugin described.
    pub async fn start(
        command: ChildCommand,
        timeout: Duration,
    ) -> Result<(ProcessRunner, Vec<u8>), String> {
        let (running, manifest) = spawn(&command, timeout).await?;
        let runner = ProcessRunner {
            name: String::new(),
            command,
            timeout,
            slot: Mutex::new(Slot {
                child: Some(running),
                dirty: false,
                failures: 0,
                retry_at: None,
            }),
            starts: AtomicU64::new(1),
        };
        Ok((runner, manifest))
    }

    /// Names the runner once the manifest is known (for logs).
    pub fn named(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    /// How many times a child was started (1 + restarts).
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed)
    }

    /// Whether a child is running now.
    pub fn is_running(&self) -> bool {
        self.slot
            .try_lock()
            .map(|slot| slot.child.is_some())
            .unwrap_or(true)
    }

    pub async fn call(
        &self,
        kind: CallKind,
        input: &[u8],
        ctx: &CallContext,
    ) -> Result<Outcome, CallError> {
        // One deadline for the whole call: waiting behind other calls, a restart and the
        // exchange itself all count against it.
        let deadline = Instant::now() + self.timeout;
        let mut slot = tokio::time::timeout_at(deadline, self.slot.lock())
            .await
            .map_err(|_| CallError::Busy)?;
        if slot.dirty {
            // Reading on would pair this call with the abandoned one's answer: start over
            // with a fresh process (not the plugin's fault, so no backoff).
            if let Some(mut child) = slot.child.take() {
                let _ = child.process.start_kill();
                let _ = child.process.wait().await;
            }
            slot.dirty = false;
            slot.retry_at = None;
        }
        if slot.child.is_none() {
            if let Some(at) = slot.retry_at {
                let now = Instant::now();
                if at > now {
                    return Err(CallError::Restarting {
                        retry_after: at - now,
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match spawn(&self.command, left).await {
                Ok((running, _manifest)) => {
                    self.starts.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("plugin_restarts_total", "plugin" => self.name.clone())
                        .increment(1);
                    tracing::info!(plugin = %self.name, "plugin process restarted");
                    slot.child = Some(running);
                }
                Err(why) => {
                    self.failed(&mut slot);
                    return Err(CallError::Crashed(why));
                }
            }
        }
        slot.dirty = true;
        let Some(running) = slot.child.as_mut() else {
            return Err(CallError::Crashed("no plugin process".into()));
        };
        let tag = match kind {
            CallKind::Event => protocol::EVENT,
            CallKind::Request => protocol::REQUEST,
            CallKind::Task => protocol::TASK,
        };
        let outcome = tokio::time::timeout_at(deadline, exchange(running, tag, input, ctx)).await;
        slot.dirty = false;
        match outcome {
            Ok(Ok(outcome)) => {
                slot.failures = 0;
                slot.retry_at = None;
                Ok(outcome)
            }
            Ok(Err(io)) => {
                let why = match slot.child.take() {
                    Some(child) => ended(child).await,
                    None => io.to_string(),
                };
                tracing::error!(plugin = %self.name, reason = %why, "plugin process died during a call");
                self.failed(&mut slot);
                Err(CallError::Crashed(why))
            }
            Err(_) => {
                if let Some(mut child) = slot.child.take() {
                    let _ = child.process.start_kill();
                    let _ = child.process.wait().await;
                }
                tracing::error!(plugin = %self.name, timeout_ms = self.timeout.as_millis() as u64,
                    "plugin call timed out; its process was killed");
                self.failed(&mut slot);
                Err(CallError::TimedOut(self.timeout))
            }
        }
    }

    fn failed(&self, slot: &mut Slot) {
        slot.failures = slot.failures.saturating_add(1);
        let exponent = slot.failures.saturating_sub(1).min(16);
        let backoff = BACKOFF_BASE
            .saturating_mul(1u32 << exponent)
            .min(BACKOFF_MAX);
        slot.retry_at = Some(Instant::now() + backoff);
        metrics::counter!("plugin_failures_total", "plugin" => self.name.clone()).increment(1);
    }
}

/// Starts a child and waits for its hello (the manifest) or its reason for failing.
async fn spawn(command: &ChildCommand, timeout: Duration) -> Result<(Running, Vec<u8>), String> {
    let mut process = Command::new(&command.executable)
        .arg("plugin-host")
        .arg("--library")
        .arg(&command.library)
        .arg("--sha256")
        .arg(&command.sha256)
        .arg("--memory-limit-mb")
        .arg(command.memory_limit_mb.to_string())
        // The plugin is not handed the server's environment (its secrets among it). This
        // is no sandbox: the child runs as the server's user, which is why only libraries
        // the operator listed by hash are loaded. The server makes itself non-dumpable
        // (`forbid_inspection`), so that user's processes cannot read its memory or its
        // /proc environ without ptrace rights.
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {} plugin-host: {e}",
                command.executable.display()
            )
        })?;
    let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
        return Err("the plugin process has no pipe".into());
    };
    if let Some(stderr) = process.stderr.take() {
        // What the plugin prints is its own business and may hold anything: kept out of
        // the normal log, visible at debug level.
        let library = command.library.display().to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(library = %library, "plugin stderr: {line}");
            }
        });
    }
    let mut running = Running {
        process,
        stdin,
        stdout: BufReader::new(stdout),
    };
    let hello = tokio::time::timeout(timeout, read_frame_async(&mut running.stdout)).await;
    match hello {
        Ok(Ok(frame)) if frame.tag == protocol::HELLO => Ok((running, frame.payload)),
        Ok(Ok(frame)) if frame.tag == protocol::FATAL => {
            let _ = running.process.wait().await;
            Err(String::from_utf8_lossy(&frame.payload).into_owned())
        }
        Ok(Ok(frame)) => Err(format!("unexpected first frame {}", frame.tag)),
        Ok(Err(_)) => Err(ended(running).await),
        Err(_) => {
            let _ = running.process.start_kill();
            Err("the plugin did not describe itself in time".into())
        }
    }
}

/// Serves one call: sends the input, answers host calls and log lines until the result.
async fn exchange(
    running: &mut Running,
    tag: u8,
    input: &[u8],
    ctx: &CallContext,
) -> std::io::Result<Outcome> {
    write_frame_async(&mut running.stdin, tag, input).await?;
    loop {
        let frame = read_frame_async(&mut running.stdout).await?;
        match frame.tag {
            protocol::RESULT_OK => return Ok(Outcome::Ok(frame.payload)),
            protocol::RESULT_FAILED => return Ok(Outcome::Failed(frame.payload)),
            protocol::RESULT_PANIC => {
                return Ok(Outcome::Panicked(
                    String::from_utf8_lossy(&frame.payload).into_owned(),
                ));
            }
            protocol::HOST_CALL => {
                let (tag, reply) = match ctx.host_call(&frame.payload).await {
                    Ok(answer) => (protocol::HOST_REPLY_OK, answer),
                    Err(failure) => (protocol::HOST_REPLY_ERROR, failure),
                };
                write_frame_async(&mut running.stdin, tag, &reply).await?;
            }
            protocol::LOG => {
                if let Some((&level, message)) = frame.payload.split_first() {
                    ctx.log(u32::from(level), &String::from_utf8_lossy(message));
                }
            }
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unexpected frame {other} from the plugin"),
                ));
            }
        }
    }
}

/// Why a child ended, once it has.
async fn ended(mut running: Running) -> String {
    drop(running.stdin);
    let status = tokio::time::timeout(Duration::from_secs(2), running.process.wait()).await;
    match status {
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("the plugin process exited with status {code}"),
            (None, Some(signal)) => format!(
                "the plugin process was killed by signal {signal} ({})",
                signal_name(signal)
            ),
            _ => "the plugin process ended".into(),
        },
        _ => {
            let _ = running.process.start_kill();
            "the plugin process stopped answering".into()
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => "SIGILL: illegal instruction",
        6 => "SIGABRT: aborted, e.g. out of memory",
        7 => "SIGBUS: bus error",
        9 => "SIGKILL: killed",
        11 => "SIGSEGV: segmentation fault",
        15 => "SIGTERM: terminated",
        _ => "signal",
    }
}
