//! `embed_migrations!` reads the migrations at compile time; without this, a migration
//! added later would not make Cargo build the crate again, and the binary would silently
//! lack it.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/whatsapp");
}
