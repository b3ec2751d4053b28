//! Deploy: validate, honour the request_id, create, and optionally wait like `kubectl wait`
//! done on the server.

use std::time::Duration;

use tokio::time::Instant;

use crate::domain::spec::{DeploySpec, resolve_profile};
use crate::domain::validate::validate_deploy;
use crate::domain::{Caller, DeployInput, ImageReference, PodState, WaitFor};
use crate::grpc::DeployerService;
use crate::grpc::convert::{health_name, reason_name};
use crate::hub::{Filter, PodView, Subscription, Update};
use crate::policy::{Action, ImageRefusalKind};
use crate::proto::deployer::v1 as pb;
use crate::{Error, Result};

/// How many generated names Deploy tries when one is taken.
const NAME_ATTEMPTS: usize = 3;
/// Answer this much before the caller's deadline, so that it gets our reason rather than
/// the transport's bare DEADLINE_EXCEEDED.
const DEADLINE_MARGIN: Duration = Duration::from_millis(200);

/// The caller's deadline, from the `grpc-timeout` header.
pub(super) fn caller_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Instant::now().checked_add(timeout)
}

impl DeployerService {
    pub(super) async fn deploy(
        &self,
        caller: &Caller,
        request: pb::DeployRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::DeployResponse> {
        let input = DeployInput::from(request);
        let mut spec = validate_deploy(&input).map_err(Error::InvalidRequest)?;
        self.check_namespace(&spec.namespace)?;
        self.authorize(caller, Action::Deploy, &spec.namespace)?;
        self.check_image(&spec.image)?;

        // The operator's floor is checked before anything reaches the API server.
        let (requested, namespace) = (spec.pod_security, spec.namespace.clone());
        let policy_profile = self.policy.pod_security(&namespace);
        let profile_for = |enforced: Option<&str>| {
            resolve_profile(
                requested,
                self.settings.pod_security,
                policy_profile,
                enforced,
            )
            .map_err(|floor| {
                Error::Forbidden(format!(
                    "pod_security: {} is weaker than {}, the least this server allows in \
                         namespace {namespace:?}",
                    requested.map_or("unspecified", |p| p.as_str()),
                    floor.as_str(),
                ))
            })
        };
        profile_for(None)?;

        if let Some(existing) = self.previous_attempt(&spec).await? {
            spec.name.clone_from(&existing.name);
            return self.answer(&spec, existing, false, deadline).await;
        }

        // Reading the namespace also tells a missing namespace apart before anything else.
        let enforced = self.pods.pod_security_enforced(&spec.namespace).await?;
        let profile = profile_for(enforced.as_deref())?;

        // Subscribe before creating, so that the wait sees every change from the first.
        let waiting = spec.wait.is_some() && !spec.dry_run;
        let mut attempt = 1;
        loop {
            let subscription = if waiting {
                Some(self.subscribe(&spec.namespace, &spec.name).await?)
            } else {
                None
            };
            match self.pods.create(&spec, profile).await {
                Ok(created) => {
                    tracing::info!(
                        namespace = %spec.namespace, name = %spec.name, image = %spec.image,
                        pod_security = profile.as_str(), dry_run = spec.dry_run, "pod created"
                    );
                    return self
                        .finish(&spec, created, !spec.dry_run, subscription, deadline)
                        .await;
                }
                Err(Error::NameTaken { .. }) if spec.request_id.is_some() => {
                    // A concurrent retry of the same request may have won the race.
                    if let Some(existing) = self.previous_attempt(&spec).await? {
                        return self.answer(&spec, existing, false, deadline).await;
                    }
                    return Err(Error::NameTaken {
                        namespace: spec.namespace.clone(),
                        name: spec.name.clone(),
                    });
                }
                Err(Error::NameTaken { .. }) if spec.generated_name && attempt < NAME_ATTEMPTS => {
                    attempt += 1;
                    spec = validate_deploy(&input).map_err(Error::InvalidRequest)?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Refuse images the policy does not allow: a registry or repository outside the allowed
    /// ones is PERMISSION_DENIED; a reference of the wrong form (no digest where one is
    /// required, a denied tag) is FAILED_PRECONDITION.
    fn check_image(&self, image: &ImageReference) -> Result<()> {
        match self.policy.check_image(image) {
            Ok(()) => Ok(()),
            Err(refused) => match refused.kind {
                ImageRefusalKind::NotAllowed => Err(Error::ImageNotAllowed(refused.to_string())),
                ImageRefusalKind::DigestRequired | ImageRefusalKind::TagDenied => {
                    Err(Error::ImageRefused(refused.to_string()))
                }
            },
        }
    }

    /// The pod an earlier attempt of this request created, if any. A request_id reused for
    /// a different request is refused.
    async fn previous_attempt(&self, spec: &DeploySpec) -> Result<Option<PodState>> {
        let Some(request_id) = &spec.request_id else {
            return Ok(None);
        };
        let Some(existing) = self
            .pods
            .find_by_request_id(&spec.namespace, request_id)
            .await?
        else {
            return Ok(None);
        };
        if existing.request_hash.as_deref() != Some(spec.request_hash.as_str()) {
            return Err(Error::RequestIdReused(request_id.clone()));
        }
        Ok(Some(existing))
    }

    async fn subscribe(&self, namespace: &str, name: &str) -> Result<Subscription> {
        self.hub
            .subscribe(namespace, Filter::Name(name.to_owned()))
            .await
            .map_err(|error| Error::from_subscribe(namespace, error))
    }

    /// Answer with an existing pod, waiting first if the request asks to.
    async fn answer(
        &self,
        spec: &DeploySpec,
        pod: PodState,
        created: bool,
        deadline: Option<Instant>,
    ) -> Result<pb::DeployResponse> {
        let subscription = if spec.wait.is_some() && !spec.dry_run {
            Some(self.subscribe(&spec.namespace, &pod.name).await?)
        } else {
            None
        };
        self.finish(spec, pod, created, subscription, deadline)
            .await
    }

    async fn finish(
        &self,
        spec: &DeploySpec,
        pod: PodState,
        created: bool,
        subscription: Option<Subscription>,
        deadline: Option<Instant>,
    ) -> Result<pb::DeployResponse> {
        let view = match (spec.wait, subscription) {
            (Some((wanted, timeout)), Some(subscription)) => {
                let limit = Instant::now() + timeout;
                let limit = deadline
                    .map(|d| d.checked_sub(DEADLINE_MARGIN).unwrap_or(d))
                    .map_or(limit, |d| d.min(limit));
                wait_for(subscription, &pod, wanted, limit, timeout).await?
            }
            _ => PodView::new(pod),
        };
        let pod_security = view
            .state
            .pod_security
            .map_or(pb::PodSecurity::Unspecified, pb::PodSecurity::from);
        Ok(pb::DeployResponse {
            pod: Some(pb::PodStatus::from(&view)),
            created,
            pod_security: pod_security.into(),
        })
    }
}

fn wanted_name(wanted: WaitFor) -> &'static str {
    match wanted {
        WaitFor::None => "NONE",
        WaitFor::Scheduled => "SCHEDULED",
        WaitFor::Running => "RUNNING",
        WaitFor::Ready => "READY",
    }
}

fn failed(view: &PodView) -> Error {
    Error::PodFailed {
        namespace: view.state.namespace.clone(),
        name: view.state.name.clone(),
        reason: reason_name(view.assessment.reason),
        message: view.assessment.message.clone(),
    }
}

/// Follow the pod until it meets `wanted`, fails, or `limit` passes.
async fn wait_for(
    mut subscription: Subscription,
    created: &PodState,
    wanted: WaitFor,
    limit: Instant,
    timeout: Duration,
) -> Result<PodView> {
    let mut last = PodView::new(created.clone());
    loop {
        let update = tokio::time::timeout_at(limit, subscription.updates.recv()).await;
        let view = match update {
            Err(_) => {
                let mut state = health_name(last.assessment.health);
                if !last.assessment.message.is_empty() {
                    state = format!(
                        "{state}, {}: {}",
                        reason_name(last.assessment.reason),
                        last.assessment.message
                    );
                }
                return Err(Error::WaitTimedOut {
                    pod: format!("{}/{}", last.state.namespace, last.state.name),
                    wanted: wanted_name(wanted),
                    waited: timeout,
                    state,
                });
            }
            Ok(None) => return Err(Error::ShuttingDown),
            Ok(Some(Update::Snapshot { pods, .. } | Update::Resync { pods, .. })) => match pods
                .into_iter()
                .find(|p| p.state.uid == created.uid || created.uid.is_empty())
            {
                Some(view) => view,
                None => continue,
            },
            Ok(Some(Update::Pod(view))) => view,
            Ok(Some(Update::Deleted(view))) => return Err(failed(&view)),
            Ok(Some(Update::Event(_))) => continue,
        };
        if wanted.is_met(
            &view.state.phase,
            view.state.node.is_some(),
            view.assessment.health,
        ) {
            return Ok((*view).clone());
        }
        if view.assessment.health.is_terminal() {
            return Err(failed(&view));
        }
        last = (*view).clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert!(caller_deadline(&metadata).is_none());
        for (value, at_least) in [
            ("5S", Duration::from_secs(4)),
            ("1500m", Duration::from_millis(1400)),
            ("2M", Duration::from_secs(119)),
        ] {
            metadata.insert("grpc-timeout", value.parse().expect("ascii"));
            let deadline = caller_deadline(&metadata).expect("a deadline");
            assert!(deadline > Instant::now() + at_least, "{value}");
        }
        metadata.insert("grpc-timeout", "5X".parse().expect("ascii"));
        assert!(caller_deadline(&metadata).is_none());
    }
}
