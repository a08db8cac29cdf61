//! The vocabulary every step speaks: kinds, keys and owners, desired and live objects, the live
//! index the pure steps read, actions and outcomes, Event notes, namespaces, quantities. It
//! imports no step, so any step can use it without the graph of modules growing a cycle.

pub mod action;
pub mod event;
pub mod fingerprint;
pub mod key;
pub mod kind;
pub mod live;
pub mod namespace;
pub mod normalize;
pub mod object;
pub mod quantity;
