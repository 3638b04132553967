//! The C ABI between Harmony and a plugin library. Plugin authors never touch it: the
//! [`export_plugin!`](crate::export_plugin) macro and [`Host`](crate::Host) wrap it.
//!
//! The library exports one symbol, [`ENTRY_SYMBOL`], an `extern "C" fn() -> *const
//! PluginTable`. Harmony reads [`PluginTable::abi_version`] and [`PluginTable::size`]
//! before anything else and refuses a library whose version differs or whose table is
//! smaller than the one it knows. Every other exchange is JSON bytes. A buffer is always
//! freed by the side that allocated it: the plugin's output buffers through
//! [`PluginTable::free_buffer`], Harmony's through [`HostTable::free_buffer`].

use std::ffi::c_void;

/// The ABI version this crate speaks. Bumped on any incompatible change of the tables or
/// of the JSON they carry.
pub const ABI_VERSION: u32 = 1;

/// The name of the entry symbol, NUL-terminated as the dynamic loader wants it.
pub const ENTRY_SYMBOL: &[u8] = b"harmony_plugin_entry\0";

/// The call succeeded; the output buffer holds its JSON result.
pub const STATUS_OK: i32 = 0;
/// The call failed in an orderly way; the output buffer holds a JSON [`Failure`](crate::Failure).
pub const STATUS_ERROR: i32 = 1;
/// The plugin panicked; the output buffer holds the panic message (UTF-8).
pub const STATUS_PANIC: i32 = 2;

/// Bytes owned by whoever allocated them (a `Vec<u8>` taken apart).
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl Buffer {
    pub const EMPTY: Buffer = Buffer {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// Hands `bytes` over the boundary; the receiver gives them back to free them.
    pub fn from_vec(bytes: Vec<u8>) -> Buffer {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Buffer {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        }
    }

    /// Takes back a buffer made by [`Buffer::from_vec`] in this same library.
    ///
    /// # Safety
    /// `self` must come from `Buffer::from_vec` of this library (or be empty) and not have
    /// been taken back before.
    #[allow(unsafe_code)]
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the caller guarantees the parts come from a Vec<u8> of this allocator.
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
    }

    /// Reads the bytes without taking ownership.
    ///
    /// # Safety
    /// `self.ptr` must be valid for `self.len` bytes (or null with length 0).
    #[allow(unsafe_code)]
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Frees a buffer allocated by the side that exports this function.
pub type FreeFn = unsafe extern "C" fn(buffer: Buffer);

/// Describes the plugin: writes its [`Manifest`](crate::Manifest) as JSON into `out`.
pub type DescribeFn = unsafe extern "C" fn(out: *mut Buffer) -> i32;

/// Handles one input (an event, a request or a task, as JSON), with `host` for callbacks.
/// Writes the JSON result (or failure) into `out` and returns a status.
pub type CallFn = unsafe extern "C" fn(
    host: *const HostTable,
    input: *const u8,
    input_len: usize,
    out: *mut Buffer,
) -> i32;

/// What a plugin library exports.
#[repr(C)]
#[derive(Debug)]
pub struct PluginTable {
    /// Must equal the host's [`ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<PluginTable>()` as the plugin was built.
    pub size: u32,
    pub describe: DescribeFn,
    /// Input: an [`Event`](crate::Event); output: `null`.
    pub handle_event: CallFn,
    /// Input: a [`Request`](crate::Request); output: a [`Response`](crate::Response).
    pub handle_request: CallFn,
    /// Input: a [`Task`](crate::Task); output: `null`.
    pub run_task: CallFn,
    /// Frees the buffers this library wrote into `out`.
    pub free_buffer: FreeFn,
}

/// Writes a line to Harmony's log, tagged with the plugin's name.
pub type LogFn =
    unsafe extern "C" fn(context: *mut c_void, level: u32, message: *const u8, len: usize);

/// Asks Harmony for a service: `request` is a JSON [`HostRequest`](crate::HostRequest);
/// `out` receives the JSON answer (status [`STATUS_OK`]) or a JSON
/// [`Failure`](crate::Failure) (status [`STATUS_ERROR`]).
pub type HostCallFn = unsafe extern "C" fn(
    context: *mut c_void,
    request: *const u8,
    len: usize,
    out: *mut Buffer,
) -> i32;

/// What Harmony hands the plugin for the length of one call. Valid only during that call.
#[repr(C)]
#[derive(Debug)]
pub struct HostTable {
    pub abi_version: u32,
    pub size: u32,
    /// Harmony's state for this call; passed back unchanged.
    pub context: *mut c_void,
    pub log: LogFn,
    pub call: HostCallFn,
    /// Frees the buffers Harmony wrote into `out`.
    pub free_buffer: FreeFn,
}

/// The signature of the entry symbol.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginTable;

/// Log levels of [`HostTable::log`].
pub mod level {
    pub const ERROR: u32 = 1;
    pub const WARN: u32 = 2;
    pub const INFO: u32 = 3;
    pub const DEBUG: u32 = 4;
}
