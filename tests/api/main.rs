//! Integration tests: catgate on 127.0.0.1:0 with a temp database and a scripted mock
//! upstream, driven over HTTP the way clients drive it.

mod helpers;
mod smoke;
mod azure;
mod failover;
mod proxy;
mod shutdown;
mod streaming;
