//! End-to-end tests against the real local control plane (`make test` starts it).
mod adoption;
mod audit;
mod controller;
mod gitops;
mod harness;
mod health;
mod install;
mod nodes;
mod plan;
mod protobuf_watch;
mod quantities;
mod security;
mod shared_quotas;
mod smoke;
mod storage;
mod validation;
mod window;
