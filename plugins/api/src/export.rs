//! The glue [`export_plugin!`](crate::export_plugin) expands to: every entry point decodes
//! its input, calls the safe [`Plugin`](crate::Plugin) method inside `catch_unwind`, and
//! encodes the result. A panic never unwinds into Harmony.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::abi::{self, Buffer, HostTable};
use crate::host::Host;
use crate::types::Failure;
use crate::{Event, Plugin, Request, Task};

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "the plugin panicked".to_owned()
    }
}

/// Writes `bytes` to `out` and returns `status`.
#[allow(unsafe_code)]
fn answer(out: *mut Buffer, status: i32, bytes: Vec<u8>) -> i32 {
    if out.is_null() {
        return abi::STATUS_ERROR;
    }
    // SAFETY: `out` is non-null and points to a Buffer the caller owns for this call.
    unsafe { out.write(Buffer::from_vec(bytes)) };
    status
}

fn finish<T: Serialize>(out: *mut Buffer, outcome: std::thread::Result<Result<T, Failure>>) -> i32 {
    match outcome {
        Ok(Ok(value)) => match serde_json::to_vec(&value) {
            Ok(bytes) => answer(out, abi::STATUS_OK, bytes),
            Err(e) => failure(out, Failure::internal(format!("encoding the result: {e}"))),
        },
        Ok(Err(f)) => failure(out, f),
        Err(payload) => answer(
            out,
            abi::STATUS_PANIC,
            panic_message(payload.as_ref()).into_bytes(),
        ),
    }
}

fn failure(out: *mut Buffer, f: Failure) -> i32 {
    let bytes = serde_json::to_vec(&f).unwrap_or_else(|_| f.detail.into_bytes());
    answer(out, abi::STATUS_ERROR, bytes)
}

/// `describe`: the plugin's manifest.
pub fn describe<P: Plugin>(plugin: fn() -> &'static P, out: *mut Buffer) -> i32 {
    finish(out, catch_unwind(|| Ok(plugin().manifest())))
}

/// Decodes the input and runs `f` with the host, catching panics.
#[allow(unsafe_code)]
fn call<I: DeserializeOwned, O: Serialize>(
    host: *const HostTable,
    input: *const u8,
    len: usize,
    out: *mut Buffer,
    f: impl FnOnce(&Host<'_>, I) -> Result<O, Failure>,
) -> i32 {
    if host.is_null() {
        return failure(out, Failure::internal("no host table"));
    }
    // SAFETY: the host passes a table valid for the call, and `input` valid for `len` bytes.
    let (table, bytes) = unsafe {
        let bytes = if input.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(input, len)
        };
        (&*host, bytes)
    };
    if table.abi_version != abi::ABI_VERSION || (table.size as usize) < size_of::<HostTable>() {
        return failure(out, Failure::internal("the host speaks another ABI"));
    }
    let input: I = match serde_json::from_slice(bytes) {
        Ok(input) => input,
        Err(e) => return failure(out, Failure::internal(format!("decoding the input: {e}"))),
    };
    let host = Host::new(table);
    finish(out, catch_unwind(AssertUnwindSafe(|| f(&host, input))))
}

pub fn handle_event<P: Plugin>(
    plugin: fn() -> &'static P,
    host: *const HostTable,
    input: *const u8,
    len: usize,
    out: *mut Buffer,
) -> i32 {
    call(host, input, len, out, |h, event: Event| {
        plugin().on_event(h, event)
    })
}

pub fn handle_request<P: Plugin>(
    plugin: fn() -> &'static P,
    host: *const HostTable,
    input: *const u8,
    len: usize,
    out: *mut Buffer,
) -> i32 {
    call(host, input, len, out, |h, request: Request| {
        plugin().on_request(h, request)
    })
}

pub fn run_task<P: Plugin>(
    plugin: fn() -> &'static P,
    host: *const HostTable,
    input: *const u8,
    len: usize,
    out: *mut Buffer,
) -> i32 {
    call(host, input, len, out, |h, task: Task| {
        plugin().run_task(h, task)
    })
}

/// `free_buffer`: takes back a buffer this library allocated.
#[allow(unsafe_code)]
pub fn free_buffer(buffer: Buffer) {
    // SAFETY: Harmony only hands back buffers it received from this library's entry points.
    drop(unsafe { buffer.into_vec() });
}

/// Turns a type implementing [`Plugin`](crate::Plugin) + `Default` into the exported ABI
/// table. Use it once, at the root of a `cdylib` crate:
///
/// ```text
/// harmony_plugin_api::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[allow(unsafe_code)]
        const _: () = {
            use $crate::abi::{Buffer, HostTable, PluginTable};

            fn instance() -> &'static $plugin {
                static INSTANCE: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();
                INSTANCE.get_or_init(<$plugin as ::std::default::Default>::default)
            }
            unsafe extern "C" fn describe(out: *mut Buffer) -> i32 {
                $crate::export::describe(instance, out)
            }
            unsafe extern "C" fn handle_event(
                host: *const HostTable,
                input: *const u8,
                len: usize,
                out: *mut Buffer,
            ) -> i32 {
                $crate::export::handle_event(instance, host, input, len, out)
            }
            unsafe extern "C" fn handle_request(
                host: *const HostTable,
                input: *const u8,
                len: usize,
                out: *mut Buffer,
            ) -> i32 {
                $crate::export::handle_request(instance, host, input, len, out)
            }
            unsafe extern "C" fn run_task(
                host: *const HostTable,
                input: *const u8,
                len: usize,
                out: *mut Buffer,
            ) -> i32 {
                $crate::export::run_task(instance, host, input, len, out)
            }
            unsafe extern "C" fn free_buffer(buffer: Buffer) {
                $crate::export::free_buffer(buffer)
            }
            static TABLE: PluginTable = PluginTable {
                abi_version: $crate::abi::ABI_VERSION,
                size: ::core::mem::size_of::<PluginTable>() as u32,
                describe,
                handle_event,
                handle_request,
                run_task,
                free_buffer,
            };

            #[unsafe(no_mangle)]
            pub extern "C" fn harmony_plugin_entry() -> *const PluginTable {
                &TABLE
            }
        };
    };
}
