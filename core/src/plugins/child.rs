//! `harmony plugin-host`: the child process that loads one plugin library and serves the
//! server's calls over its stdin and stdout. Whatever the plugin does (panic, abort,
//! segfault, loop, exhaust memory) ends here, not in the server.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufReader, BufWriter, Stdin, Write};
use std::path::Path;

use super::native::{CallKind, HostSide, Library, Outcome};
use super::protocol::{self, Frame};

/// How the server starts a child.
#[derive(Debug, Clone)]
pub struct ChildArgs<'a> {
    pub library: &'a Path,
    /// The SHA-256 the library must still have when it is loaded.
    pub sha256: &'a str,
    pub memory_limit_mb: u64,
}

/// Runs the child until the server closes its stdin. Returns the process exit code.
pub fn run(args: ChildArgs<'_>) -> i32 {
    // The plugin may print: keep the real stdout for frames and point fd 1 at stderr.
    let frames_out = match rustix::io::dup(std::io::stdout())
        .and_then(|fd| rustix::stdio::dup2_stdout(std::io::stderr()).map(|()| fd))
    {
        Ok(fd) => File::from(fd),
        Err(e) => {
            eprintln!("plugin-host: cannot set up its pipe: {e}");
            return 2;
        }
    };
    let mut out = BufWriter::new(frames_out);
    let fatal = |out: &mut BufWriter<File>, why: String| {
        let _ = protocol::write_frame(out, protocol::FATAL, why.as_bytes());
        2
    };
    // Die with the server, even when stuck in plugin code.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if args.memory_limit_mb > 0 {
        let bytes = args.memory_limit_mb.saturating_mul(1 << 20);
        let limit = rustix::process::Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        };
        if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::As, limit) {
            return fatal(&mut out, format!("cannot limit memory: {e}"));
        }
    }
    match super::sha256_of(args.library) {
        Ok(actual) if actual.eq_ignore_ascii_case(args.sha256) => {}
        Ok(_) => return fatal(&mut out, "the library's SHA-256 changed".into()),
        Err(e) => return fatal(&mut out, format!("cannot read the library: {e}")),
    }
    let library = match Library::open(args.library) {
        Ok(library) => library,
        Err(why) => return fatal(&mut out, why),
    };
    let manifest = match library.describe() {
        Outcome::Ok(json) => json,
        Outcome::Failed(why) => {
            return fatal(&mut out, String::from_utf8_lossy(&why).into_owned());
        }
        Outcome::Panicked(why) => return fatal(&mut out, format!("describe panicked: {why}")),
    };
    if protocol::write_frame(&mut out, protocol::HELLO, &manifest).is_err() {
        return 2;
    }

    let pipe = Pipe {
        input: RefCell::new(BufReader::new(std::io::stdin())),
        output: RefCell::new(out),
    };
    loop {
        let frame = match pipe.read() {
            Ok(Some(frame)) => frame,
            // The server closed the pipe: it is stopping or has given up on this child.
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("plugin-host: reading from the server: {e}");
                return 2;
            }
        };
        let kind = match frame.tag {
            protocol::EVENT => CallKind::Event,
            protocol::REQUEST => CallKind::Request,
            protocol::TASK => CallKind::Task,
            other => {
                eprintln!("plugin-host: unexpected frame {other}");
                return 2;
            }
        };
        let (tag, payload) = match library.call(kind, &frame.payload, &pipe) {
            Outcome::Ok(json) => (protocol::RESULT_OK, json),
            Outcome::Failed(json) => (protocol::RESULT_FAILED, json),
            Outcome::Panicked(message) => (protocol::RESULT_PANIC, message.into_bytes()),
        };
        if pipe.write(tag, &payload).is_err() {
            return 2;
        }
    }
}

/// The child's end of the pipe, shared by the call loop and the host callbacks.
struct Pipe {
    input: RefCell<BufReader<Stdin>>,
    output: RefCell<BufWriter<File>>,
}

impl Pipe {
    fn read(&self) -> std::io::Result<Option<Frame>> {
        protocol::read_frame(&mut *self.input.borrow_mut())
    }

    fn write(&self, tag: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut out = self.output.borrow_mut();
        protocol::write_frame(&mut *out, tag, payload)?;
        out.flush()
    }
}

impl HostSide for Pipe {
    fn log(&self, level: u32, message: &str) {
        let mut payload = Vec::with_capacity(message.len() + 1);
        payload.push(u8::try_from(level).unwrap_or(u8::MAX));
        payload.extend_from_slice(message.as_bytes());
        let _ = self.write(protocol::LOG, &payload);
    }

    fn call(&self, request: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
        let lost = |why: &str| {
            Err(
                format!(r#"{{"status":503,"code":"host_unavailable","detail":"{why}"}}"#)
                    .into_bytes(),
            )
        };
        if self.write(protocol::HOST_CALL, request).is_err() {
            return lost("the server is gone");
        }
        match self.read() {
            Ok(Some(Frame {
                tag: protocol::HOST_REPLY_OK,
                payload,
            })) => Ok(payload),
            Ok(Some(Frame {
                tag: protocol::HOST_REPLY_ERROR,
                payload,
            })) => Err(payload),
            _ => lost("the server did not answer"),
        }
    }
}
