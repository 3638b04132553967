//! Test-only: a library that exports the entry symbol but speaks another ABI version, as a
//! plugin built against a future `harmony-plugin-api` would. Harmony must refuse it before
//! calling anything else. Never shipped.
#![allow(unsafe_code)]

use harmony_plugin_api::abi::{Buffer, HostTable, PluginTable};

unsafe extern "C" fn describe(_out: *mut Buffer) -> i32 {
    // Never reached: the host stops at the version.
    std::process::abort()
}

unsafe extern "C" fn call(
    _host: *const HostTable,
    _input: *const u8,
    _len: usize,
    _out: *mut Buffer,
) -> i32 {
    std::process::abort()
}

unsafe extern "C" fn free_buffer(_buffer: Buffer) {}

static TABLE: PluginTable = PluginTable {
    abi_version: 999,
    size: size_of::<PluginTable>() as u32,
    describe,
    handle_event: call,
    handle_request: call,
    run_task: call,
    free_buffer,
};

#[unsafe(no_mangle)]
pub extern "C" fn harmony_plugin_entry() -> *const PluginTable {
    &TABLE
}
