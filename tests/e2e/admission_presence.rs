//! The controller reports whether the admission policies that give governance its teeth are
//! installed and bound: on a control plane of its own without them, each is exported as missing;
//! once `config/admission` is applied, a controller started then finds each installed.

use crate::harness::{Operator, OwnControlPlane, repo_root, unique_name};

fn installed(operator: &Operator, policy: &str) -> Option<f64> {
    let filter = format!("policy=\"{policy}\"");
    let values = operator.metric_values("tenantry_admission_policy_installed", &[&filter]);
    values.first().copied()
}

#[tokio::test]
async fn missing_admission_policies_are_reported_and_installed_ones_found() {
    let plane = OwnControlPlane::up(&unique_name("admission"), 0);
    plane.install_crd();
    let policies = tenantry::controller::admission_check::POLICIES;
    let shard = unique_name("admission");
    let mut operator = Operator::start_with(&shard, &[], Some(&plane.kubeconfig)).await;
    for policy in policies {
        let value = crate::harness::eventually(&format!("{policy} reported"), || async {
            installed(&operator, policy)
        })
        .await;
        assert_eq!(
            value, 0.0,
            "{policy} is not installed on this control plane"
        );
    }
    operator.stop();
    let admission = repo_root().join("config/admission");
    plane.kubectl(&["apply", "--server-side", "-k", admission.to_str().unwrap()]);
    let operator = Operator::start_with(&shard, &[], Some(&plane.kubeconfig)).await;
    for policy in policies {
        let value = crate::harness::eventually(&format!("{policy} reported"), || async {
            installed(&operator, policy)
        })
        .await;
        assert_eq!(value, 1.0, "{policy} and its binding were just applied");
    }
}
