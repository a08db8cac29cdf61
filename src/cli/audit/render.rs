//! The report as text tables. It reads nothing but the [`AuditReport`], so the table holds no
//! fact that `-o json` lacks.

use super::{AuditReport, SharedQuotaReport};

/// The report as tables: the same facts as `-o json`, nothing more.
pub fn render(report: &AuditReport) -> String {
    let mut out = String::from(
        "NAMESPACE                       PODS  BESTEFFORT BURSTABLE GUARANTEED  REQ CPU   REQ MEM   QUOTAS  LIMITRANGES  GOVERNED BY\n",
    );
    let or_none = |n: usize| {
        if n == 0 {
            "none".to_owned()
        } else {
            n.to_string()
        }
    };
    for n in &report.namespaces {
        let q = |c: &str| n.qos.get(c).copied().unwrap_or(0);
        let governed: Vec<String> = n
            .governed_by
            .iter()
            .map(|(k, p)| format!("{k}={}", p.join(",")))
            .collect();
        out.push_str(&format!(
            "{:<31} {:>4}  {:>10} {:>9} {:>10}  {:<9} {:<9} {:>6}  {:>11}  {}\n",
            n.name,
            n.pods,
            q("BestEffort"),
            q("Burstable"),
            q("Guaranteed"),
            n.requests.get("cpu").map(String::as_str).unwrap_or("-"),
            n.requests.get("memory").map(String::as_str).unwrap_or("-"),
            or_none(n.quotas.len()),
            or_none(n.limit_ranges.len()),
            if governed.is_empty() {
                "-".into()
            } else {
                governed.join("; ")
            }
        ));
    }
    out.push_str(
        "\nWORKLOAD                                            REPLICAS  QOS (NEW PODS)  PDBS                NOTE\n",
    );
    for w in &report.workloads {
        out.push_str(
            format!(
                "{:<51} {:>8}  {:<14}  {:<18}  {}\n",
                format!("{}/{}/{}", w.namespace, w.kind, w.name),
                w.replicas,
                w.qos,
                if w.pdbs.is_empty() {
                    "-".into()
                } else {
                    w.pdbs.join(",")
                },
                w.qos_note.as_deref().unwrap_or("")
            )
            .trim_end(),
        );
        out.push('\n');
    }
    render_shared(&report.shared_quotas, &mut out);
    out.push_str("\nFINDINGS\n");
    for f in &report.findings {
        out.push_str(&format!("- {f}\n"));
    }
    out
}

/// The SHARED QUOTAS section: a line per resource of each budget, its namespaces on the first.
fn render_shared(shared: &[SharedQuotaReport], out: &mut String) {
    if shared.is_empty() {
        return;
    }
    out.push_str(&format!(
        "\n{:<39} {:<18} {:>10} {:>10} {:>10} {:>5}  NAMESPACES\n",
        "SHARED QUOTAS", "RESOURCE", "USED", "ALLOTTED", "HARD", "USE"
    ));
    for q in shared {
        let mut first = true;
        for (resource, r) in &q.resources {
            let line = format!(
                "{:<39} {:<18} {:>10} {:>10} {:>10} {:>5}  {}",
                if first {
                    format!("{}/{}", q.policy, q.name)
                } else {
                    String::new()
                },
                resource,
                r.used,
                r.allotted,
                r.hard.as_deref().unwrap_or("-"),
                r.percent
                    .map(|p| format!("{p}%"))
                    .unwrap_or_else(|| "-".into()),
                if first {
                    q.namespaces.join(",")
                } else {
                    String::new()
                },
            );
            out.push_str(line.trim_end());
            out.push('\n');
            first = false;
        }
    }
}
