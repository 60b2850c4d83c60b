//! Integration tests: catgate on 127.0.0.1:0 with a temp database and a scripted mock
//! upstream, driven over HTTP the way clients drive it.

mod admin_keys;
mod admin_usages;
mod admin_users;
mod azure;
mod azure_inbound;
mod body_timeout;
mod cli;
mod failover;
mod helpers;
mod key_health;
mod limits;
mod metering;
mod metrics;
mod ops;
mod postgres;
mod properties;
mod proxy;
mod reliability;
mod reports;
mod secrets;
mod shutdown;
mod smoke;
mod streaming;
mod ui;
mod uploads;
