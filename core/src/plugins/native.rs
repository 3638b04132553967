//! Loading a plugin library into this process and calling it through the C ABI. Used by
//! the `harmony plugin-host` child (the default) and by in-process plugins.
//!
//! This is the only place, with the child's process set-up, where Harmony runs `unsafe`
//! code: every block says what it relies on.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::path::Path;

use harmony_plugin_api::abi::{self, Buffer, EntryFn, HostTable, PluginTable};

/// What one call of a plugin produced.
#[derive(Debug)]
pub enum Outcome {
    /// The JSON result.
    Ok(Vec<u8>),
    /// A JSON `Failure` the plugin returned.
    Failed(Vec<u8>),
    /// The plugin panicked (caught at the boundary); the panic message.
    Panicked(String),
}

/// Which entry point to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Event,
    Request,
    Task,
}

/// Harmony's side of a call: what the plugin's host callbacks reach.
pub trait HostSide {
    fn log(&self, level: u32, message: &str);
    /// Answers a JSON host request: `Ok` JSON, or `Err` JSON `Failure`.
    fn call(&self, request: &[u8]) -> Result<Vec<u8>, Vec<u8>>;
}

/// A loaded library. It is never unloaded: a Rust library that registered thread-local
/// destructors cannot be unloaded safely, so plugins are load-once.
pub struct Library {
    _library: ManuallyDrop<libloading::Library>,
    table: &'static PluginTable,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Library")
    }
}

impl Library {
    /// Loads the library and checks its ABI version and table size before anything else.
    pub fn open(path: &Path) -> Result<Library, String> {
        // SAFETY: loading runs the library's initialisers. Only files whose SHA-256 the
        // operator listed in the configuration get here (checked by the caller).
        let library = unsafe { libloading::Library::new(path) }
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        // SAFETY: the symbol is declared by the ABI as `extern "C" fn() -> *const
        // PluginTable`; a library exporting it with another type breaks the ABI contract.
        let entry: EntryFn = unsafe {
            *library
                .get::<EntryFn>(abi::ENTRY_SYMBOL)
                .map_err(|_| "the library exports no harmony_plugin_entry symbol".to_owned())?
        };
        // SAFETY: see above; the entry takes no arguments.
        let table = unsafe { entry() };
        if table.is_null() {
            return Err("harmony_plugin_entry returned no table".into());
        }
        // SAFETY: the two leading u32 fields are common to every ABI version, so they can
        // be read before the version is known to match.
        let (version, size) = unsafe {
            let head = table.cast::<u32>();
            (head.read(), head.add(1).read())
        };
        if version != abi::ABI_VERSION {
            return Err(format!(
                "the library speaks plugin ABI version {version}; this Harmony speaks {}",
                abi::ABI_VERSION
            ));
        }
        if (size as usize) < size_of::<PluginTable>() {
            return Err(format!(
                "the library's plugin table is {size} bytes; ABI {} needs {}",
                abi::ABI_VERSION,
                size_of::<PluginTable>()
            ));
        }
        // SAFETY: version and size match, so the pointer is a PluginTable, which lives as
        // long as the library, which is never unloaded.
        let table: &'static PluginTable = unsafe { &*table };
        Ok(Library {
            _library: ManuallyDrop::new(library),
            table,
        })
    }

    /// The plugin's manifest, as JSON.
    pub fn describe(&self) -> Outcome {
        let mut out = Buffer::EMPTY;
        // SAFETY: `out` is a valid buffer slot for the call.
        let status = unsafe { (self.table.describe)(&mut out) };
        self.take(status, out)
    }

    /// Calls one entry point with `input`, serving its host callbacks through `host`.
    pub fn call(&self, kind: CallKind, input: &[u8], host: &dyn HostSide) -> Outcome {
        let function = match kind {
            CallKind::Event => self.table.handle_event,
            CallKind::Request => self.table.handle_request,
            CallKind::Task => self.table.run_task,
        };
        // A thin pointer to the fat `&dyn HostSide`, valid for this call.
        let side: &&dyn HostSide = &host;
        let table = HostTable {
            abi_version: abi::ABI_VERSION,
            size: size_of::<HostTable>() as u32,
            context: (side as *const &dyn HostSide).cast_mut().cast::<c_void>(),
            log: host_log,
            call: host_call,
            free_buffer: host_free,
        };
        let mut out = Buffer::EMPTY;
        // SAFETY: the table, `input` and `out` outlive the call; the plugin may only use
        // them during it (the ABI says so).
        let status = unsafe { function(&table, input.as_ptr(), input.len(), &mut out) };
        self.take(status, out)
    }

    fn take(&self, status: i32, out: Buffer) -> Outcome {
        // SAFETY: the plugin wrote `out` for us; we copy it and give it back to the
        // plugin's own allocator.
        let bytes = unsafe {
            let bytes = out.as_slice().to_vec();
            (self.table.free_buffer)(out);
            bytes
        };
        match status {
            abi::STATUS_OK => Outcome::Ok(bytes),
            abi::STATUS_PANIC => Outcome::Panicked(String::from_utf8_lossy(&bytes).into_owned()),
            _ => Outcome::Failed(bytes),
        }
    }
}

/// # Safety
/// `context` is the pointer `Library::call` put in the table, valid during the call.
unsafe fn side<'a>(context: *mut c_void) -> &'a dyn HostSide {
    // SAFETY: guaranteed by the caller.
    unsafe { *context.cast::<&dyn HostSide>() }
}

/// # Safety
/// `ptr` must be valid for `len` bytes, or null.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

unsafe extern "C" fn host_log(context: *mut c_void, level: u32, message: *const u8, len: usize) {
    // SAFETY: the plugin passes back our context and a message valid for `len` bytes.
    let (side, message) = unsafe { (side(context), bytes(message, len)) };
    side.log(level, &String::from_utf8_lossy(message));
}

unsafe extern "C" fn host_call(
    context: *mut c_void,
    request: *const u8,
    len: usize,
    out: *mut Buffer,
) -> i32 {
    if out.is_null() {
        return abi::STATUS_ERROR;
    }
    // SAFETY: as in `host_log`.
    let (side, request) = unsafe { (side(context), bytes(request, len)) };
    let (status, answer) = match side.call(request) {
        Ok(answer) => (abi::STATUS_OK, answer),
        Err(failure) => (abi::STATUS_ERROR, failure),
    };
    // SAFETY: `out` is non-null and the plugin's slot for our answer.
    unsafe { out.write(Buffer::from_vec(answer)) };
    status
}

unsafe extern "C" fn host_free(buffer: Buffer) {
    // SAFETY: the plugin hands back buffers `host_call` allocated here.
    drop(unsafe { buffer.into_vec() });
}
