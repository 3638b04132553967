//! Test-only: a plugin that misbehaves on request, to prove that the host contains it.
//! Each route does one bad thing; `/ok` answers normally, so tests can see the plugin
//! come back after its process was restarted. Never shipped.

use harmony_plugin_api::{Failure, Host, Manifest, Plugin, Request, Response, RouteSpec};
use serde_json::json;

#[derive(Default)]
struct Misbehaving;

const ROUTES: [&str; 9] = [
    "/ok", "/panic", "/abort", "/hang", "/oom", "/print", "/crash", "/slow", "/peek",
];

impl Plugin for Misbehaving {
    fn manifest(&self) -> Manifest {
        Manifest {
            name: "misbehaving".into(),
            version: "0.0.0".into(),
            description: "Test-only: panics, aborts, hangs and exhausts memory on request".into(),
            events: vec![],
            routes: ROUTES
                .iter()
                .map(|path| RouteSpec {
                    method: "GET".into(),
                    path: (*path).into(),
                    summary: format!("Test: {path}"),
                    description: String::new(),
                    roles: vec![],
                    request_schema: None,
                    response_schema: None,
                    query: vec![],
                })
                .collect(),
            capabilities: vec![],
            tasks: vec![],
        }
    }

    fn on_request(&self, host: &Host<'_>, request: Request) -> Result<Response, Failure> {
        match request.route.as_str() {
            "/ok" => Ok(Response::ok(
                json!({ "ok": true, "pid": std::process::id() }),
            )),
            "/panic" => panic!("misbehaving plugin panics on purpose"),
            "/abort" => std::process::abort(),
            "/hang" => loop {
                std::hint::spin_loop();
            },
            "/oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Touch every page so the memory is really taken.
                    hoard.push(vec![1u8; 16 << 20]);
                }
            }
            // Reads a patient without having asked for `patients:read`.
            "/peek" => host
                .patient("00000000-0000-0000-0000-000000000000")
                .map(Response::ok),
            "/slow" => {
                std::thread::sleep(std::time::Duration::from_millis(600));
                Ok(Response::ok(json!({ "slow": true })))
            }
            "/print" => {
                // Printing must not corrupt the pipe to the server.
                print_to_stdout();
                Ok(Response::ok(json!({ "printed": true })))
            }
            "/crash" => {
                // A segmentation fault: a write through a null pointer.
                let null = std::hint::black_box(std::ptr::null_mut::<u8>());
                // SAFETY: none; crashing is the point of this route.
                #[allow(unsafe_code)]
                unsafe {
                    null.write_volatile(1);
                }
                Ok(Response::ok(json!({ "crashed": false })))
            }
            _ => Err(Failure::not_found("route")),
        }
    }
}

#[expect(clippy::print_stdout, reason = "what the /print route tests")]
fn print_to_stdout() {
    println!("misbehaving plugin writes to stdout");
}

harmony_plugin_api::export_plugin!(Misbehaving);
