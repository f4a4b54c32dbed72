//! End-to-end tests against the real local stack (Tansu broker, S3 server) that
//! `infra/up.sh` starts. Hosts and ports come from the same environment variables the
//! workers read, with loopback defaults. Every test uses its own topic prefix and consumer
//! groups, so tests run in parallel and reruns never see each other's messages.

mod support;

mod ab;
mod deploy;
mod embedded;
mod faults;
mod hostile;
mod personal;
mod pipeline;
mod process;
mod relay;
mod security;
mod sinks;
mod tools;
