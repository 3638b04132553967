//! End-to-end tests of the whole server over HTTP, each on a database of its own.

// A test that cannot unwrap should fail loudly, which is what unwrap does.
#![allow(clippy::unwrap_used)]

mod support;

mod agenda;
mod appointments;
mod auth;
mod crypto;
mod fakes;
mod faults;
mod http;
mod jobs;
mod outbox;
mod patients;
mod photos;
mod plugins;
mod rbac;
mod rls;
mod snapshots;
mod sweep;
mod tenancy;
mod whatsapp;
