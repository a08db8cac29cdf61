//! The wording of status messages and Event notes that more than one place says, built in one
//! place so that they read the same everywhere and stay bounded whatever the fleet's size.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use crate::api::SharedQuotaStatus;
use crate::model::kind::Section;
use crate::pipeline::select::{Shadowed, ShadowedClass};

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
        text.push_str(&format!(" and {} more", count(more)));
    }
    text
}

/// A count with thousands separators: "2,000".
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "1 namespace", "2,000 namespaces".
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// How a message names a section: by the kind it builds, the storage section by its name.
fn section_name(section: Section) -> &'static str {
    match section {
        Section::Storage => "storage section",
        other => other.kind().as_str(),
    }
}

/// "the ResourceQuota kind in 2,000 namespaces won by higher-precedence policies: mp-team-t0,
/// mp-team-t1, mp-team-t10, mp-team-t11, mp-team-t12 and 95 more". Bounded whatever the number of
/// namespaces and winners: one clause per section, the first few winners, a count of the rest.
pub fn shadowed(shadowed: &[Shadowed]) -> String {
    let mut namespaces: BTreeMap<Section, BTreeSet<&str>> = BTreeMap::new();
    for s in shadowed {
        namespaces
            .entry(s.section)
            .or_default()
            .insert(s.namespace.as_str());
    }
    let clauses: Vec<String> = namespaces
        .iter()
        .map(|(section, in_namespaces)| {
            let kind = if *section == Section::Storage {
                ""
            } else {
                " kind"
            };
            format!(
                "the {}{kind} in {}",
                section_name(*section),
                counted(in_namespaces.len(), "namespace", "namespaces")
            )
        })
        .collect();
    let winners: BTreeSet<&str> = shadowed.iter().map(|s| s.winner.as_str()).collect();
    let by = if winners.len() == 1 {
        "a higher-precedence policy"
    } else {
        "higher-precedence policies"
    };
    format!("{} won by {by}: {}", and_list(&clauses), listing(&winners))
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// "StorageClasses owned by higher-precedence policies: fast-ssd (owned by platform)".
pub fn shadowed_classes(classes: &[ShadowedClass]) -> String {
    format!(
        "StorageClasses owned by higher-precedence policies: {}",
        listing(
            classes
                .iter()
                .map(|c| format!("{} (owned by {})", c.name, c.winner))
        )
    )
}

/// "; shared quota team-budget exhausted: pods" and "; ... over budget by pods 3" for a budget
/// in that state, nothing otherwise.
pub fn budget(state: &SharedQuotaStatus) -> String {
    let mut text = String::new();
    if !state.exhausted.is_empty() {
        text.push_str(&format!(
            "; shared quota {} exhausted: {}",
            state.name,
            state.exhausted.join(", ")
        ));
    }
    if !state.too_large.is_empty() {
        let requests: Vec<String> = (state.too_large.iter())
            .map(|r| format!("{} {} in {}", r.resource, r.request.0, r.namespace))
            .collect();
        text.push_str(&format!(
            "; shared quota {}: a request larger than the whole budget is given nothing: {}",
            state.name,
            requests.join(", ")
        ));
    }
    if !state.over_budget.is_empty() {
        let over: Vec<String> = state
            .over_budget
            .iter()
            .map(|(r, q)| format!("{r} {}", q.0))
            .collect();
        text.push_str(&format!(
            "; shared quota {} over budget by {} (nothing new is admitted until use falls)",
            state.name,
            over.join(", ")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::truncate;

    #[test]
    fn listings_name_the_first_five_and_count_the_rest() {
        assert_eq!(listing(["a", "b"]), "a, b");
        assert_eq!(listing(1..=5), "1, 2, 3, 4, 5");
        assert_eq!(listing(1..=12), "1, 2, 3, 4, 5 and 7 more");
        assert_eq!(listing(Vec::<String>::new()), "");
    }

    #[test]
    fn counts_have_thousands_separators() {
        let shown: Vec<String> = [0, 7, 999, 1000, 2000, 12345, 1234567]
            .into_iter()
            .map(count)
            .collect();
        assert_eq!(
            shown,
            ["0", "7", "999", "1,000", "2,000", "12,345", "1,234,567"]
        );
        assert_eq!(listing(0..1205), "0, 1, 2, 3, 4 and 1,200 more");
    }

    fn shadow(namespace: &str, section: Section, winner: &str) -> Shadowed {
        Shadowed {
            namespace: namespace.into(),
            section,
            winner: winner.into(),
        }
    }

    #[test]
    fn a_shadowed_fleet_reads_as_a_bounded_count() {
        // The fleet: one baseline over 2,000 namespaces, 100 teams overriding its quota.
        let fleet: Vec<Shadowed> = (0..2000)
            .map(|i| {
                shadow(
                    &format!("ns-{i}"),
                    Section::ResourceQuotas,
                    &format!("mp-team-t{}", i % 100),
                )
            })
            .collect();
        let text = shadowed(&fleet);
        assert_eq!(
            text,
            "the ResourceQuota kind in 2,000 namespaces won by higher-precedence policies: \
             mp-team-t0, mp-team-t1, mp-team-t10, mp-team-t11, mp-team-t12 and 95 more"
        );
        // Ten times the fleet, ten times the teams: the message does not grow with them.
        let bigger: Vec<Shadowed> = (0..20000)
            .map(|i| {
                shadow(
                    &format!("ns-{i}"),
                    Section::ResourceQuotas,
                    &format!("mp-team-t{}", i % 1000),
                )
            })
            .collect();
        let bigger = shadowed(&bigger);
        assert!(
            bigger.starts_with("the ResourceQuota kind in 20,000 namespaces won by")
                && bigger.ends_with(" and 995 more")
                && bigger.len() <= text.len() + 8,
            "{bigger}"
        );
    }

    #[test]
    fn shadowed_wording_is_singular_or_plural_per_kind() {
        assert_eq!(
            shadowed(&[shadow("a", Section::LimitRanges, "platform")]),
            "the LimitRange kind in 1 namespace won by a higher-precedence policy: platform"
        );
        assert_eq!(
            shadowed(&[
                shadow("a", Section::LimitRanges, "platform"),
                shadow("a", Section::ResourceQuotas, "team-mia"),
                shadow("b", Section::ResourceQuotas, "team-mia"),
                shadow("b", Section::Storage, "platform"),
            ]),
            "the LimitRange kind in 1 namespace, the ResourceQuota kind in 2 namespaces and the \
             storage section in 1 namespace won by higher-precedence policies: platform, team-mia"
        );
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abcdef".into(), 10), "abcdef");
        assert_eq!(truncate("abcdefghij".into(), 6), "abc...");
        let cut = truncate("ééééé".into(), 6);
        assert!(cut.len() <= 6 && cut.ends_with("..."), "{cut}");
    }
}
