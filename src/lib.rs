//! Portico: a reverse proxy for the perimeter network.
//!
//! A request's path through the crate, by module: `listener` (accept, TLS via `tls`) →
//! `proxy::handle` → `rules` (which farm) → `farm` (which member) → `upstream` (pooled or new
//! connection) → back through `proxy`. `config` builds the immutable model all of them read.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod access_log;
pub mod acme;
pub mod admin;
pub mod check;
pub mod config;
pub mod demo;
pub mod downstream;
pub mod farm;
pub mod health;
pub mod http1;
pub mod import;
pub mod instance;
pub mod listener;
pub mod notify;
#[allow(unsafe_code)]
pub mod os;
pub mod perimeter;
pub mod profiles;
pub mod proxy;
pub mod rules;
pub mod server;
pub mod stream;
mod task;
pub mod tls;
pub mod upstream;
pub mod worker;
