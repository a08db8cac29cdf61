//! End-to-end tests against the real local control plane (`make test` starts it).
mod adoption;
mod audit;
mod controller;
mod harness;
mod health;
mod install;
mod plan;
mod security;
mod smoke;
mod storage;
mod validation;
