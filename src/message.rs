//! The wording of status messages and Event notes that more than one place says, built in one
//! place so that they read the same everywhere and stay bounded whatever the fleet's size.

use std::collections::BTreeSet;
use std::fmt::Display;

use crate::select::{Shadowed, ShadowedClass};

/// How many items a listing names before it only counts the rest.
pub const SHOWN: usize = 5;

/// "a, b, c, d, e and 7 more": the first [`SHOWN`] items, then how many more.
pub fn listing<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    let mut shown = Vec::new();
    let mut more = 0usize;
    for item in items {
        if shown.len() < SHOWN {
            shown.push(item.to_string());
        } else {
            more += 1;
        }
    }
    let mut text = shown.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

/// "3 kinds in 2 namespaces won by higher-precedence policies: team-mia, trino".
pub fn shadowed(shadowed: &[Shadowed]) -> String {
    let namespaces: BTreeSet<&str> = shadowed.iter().map(|s| s.namespace.as_str()).collect();
    let winners: BTreeSet<&str> = shadowed.iter().map(|s| s.winner.as_str()).collect();
    format!(
        "{} kinds in {} namespaces won by higher-precedence policies: {}",
        shadowed.len(),
        namespaces.len(),
        winners.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// "StorageClasses owned by higher-precedence policies: fast-ssd (owned by platform)".
pub fn shadowed_classes(classes: &[ShadowedClass]) -> String {
    format!(
        "StorageClasses owned by higher-precedence policies: {}",
        classes
            .iter()
            .map(|c| format!("{} (owned by {})", c.name, c.winner))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Cuts `text` to at most `max` bytes (on a character boundary), marking the cut with "...".
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max - 3;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_name_the_first_five_and_count_the_rest() {
        assert_eq!(listing(["a", "b"]), "a, b");
        assert_eq!(listing(1..=5), "1, 2, 3, 4, 5");
        assert_eq!(listing(1..=12), "1, 2, 3, 4, 5 and 7 more");
        assert_eq!(listing(Vec::<String>::new()), "");
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abcdef".into(), 10), "abcdef");
        assert_eq!(truncate("abcdefghij".into(), 6), "abc...");
        let cut = truncate("ééééé".into(), 6);
        assert!(cut.len() <= 6 && cut.ends_with("..."), "{cut}");
    }
}
