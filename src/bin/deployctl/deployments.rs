//! The `deployment` subcommands, on the server's DeploymentService: each builds its request
//! (refusing bad input before connecting), calls the server, and follows the rollout on a
//! WatchRollout stream when it waits.

use k8s_deployer::proto::deployer::v1 as pb;
use tokio::time::Instant;

use crate::args::{
    ApplyArgs, Cli, DeploymentCommand, DeploymentDeleteArgs, DeploymentName, ListArgs, RestartArgs,
    RolloutCommand, ScaleArgs, UndoArgs,
};
use crate::commands::{
    DEFAULT_WAIT_TIMEOUT, PodTemplate, call, call_within, proto_duration, with_meta,
};
use crate::connect::{DeploymentClient, connect_deployments};
use crate::exit::Failure;
use crate::output::{Change, Output, Success, profile_name, rollout_of};
use crate::rollout::{RolloutFollower, rollout_request};

/// Run a `deployment` subcommand, showing what happens on `out`.
pub(crate) async fn run(
    cli: &Cli,
    command: &DeploymentCommand,
    out: &mut Output,
) -> Result<Success, Failure> {
    match command {
        DeploymentCommand::Apply(args) => apply(cli, args, out).await,
        DeploymentCommand::Rollout(RolloutCommand::Status(args)) => status(cli, args, out).await,
        DeploymentCommand::Rollout(RolloutCommand::Undo(args)) => undo(cli, args, out).await,
        DeploymentCommand::Rollout(RolloutCommand::History(args)) => history(cli, args, out).await,
        DeploymentCommand::Rollout(RolloutCommand::Restart(args))
        | DeploymentCommand::Restart(args) => restart(cli, args, out).await,
        DeploymentCommand::Scale(args) => scale(cli, args, out).await,
        DeploymentCommand::Get(args) => get(cli, args, out).await,
        DeploymentCommand::List(args) => list(cli, args, out).await,
        DeploymentCommand::Delete(args) => delete(cli, args, out).await,
    }
}

/// Follow the rollout of `deployment`'s generation (or a later one) until it is complete or
/// has failed, within `--timeout` (5 minutes by default) counted from `started`.
async fn follow(
    cli: &Cli,
    client: &mut DeploymentClient,
    deployment: &pb::Deployment,
    started: Instant,
    out: &mut Output,
) -> Result<Success, Failure> {
    let limit = cli.timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT);
    let generation = rollout_of(deployment).generation;
    let request = rollout_request(&deployment.namespace, &deployment.name, generation);
    out.following(&deployment.name);
    RolloutFollower::new(client, request, Some((started + limit, limit)), false)
        .run(out)
        .await
}

/// A command's answer without a rollout to follow.
fn done(deployment: pb::Deployment) -> Result<Success, Failure> {
    Ok(Success {
        deployment: Some(deployment),
        ..Success::default()
    })
}

async fn apply(cli: &Cli, args: &ApplyArgs, out: &mut Output) -> Result<Success, Failure> {
    let request = apply_request(args)?;
    let started = Instant::now();
    let mut client = connect_deployments(&cli.connection).await?;
    let response = call(cli, async |meta| {
        client
            .clone()
            .apply_deployment(with_meta(meta, request))
            .await
    })
    .await?;
    let deployment = response.deployment.clone().unwrap_or_default();
    out.change(&applied(&response, &deployment, args.dry_run));
    if args.no_wait || args.dry_run {
        return done(deployment);
    }
    follow(cli, &mut client, &deployment, started, out).await
}

/// The ApplyDeployment request of the flags. As for `deploy`, the server is never asked to
/// wait (`wait_for` NONE): the rollout is followed on a WatchRollout stream instead, so that
/// its progress shows as it happens.
fn apply_request(args: &ApplyArgs) -> Result<pb::ApplyDeploymentRequest, Failure> {
    let template = PodTemplate::of(&args.template)?;
    let strategy = if args.recreate {
        Some(pb::DeploymentStrategy {
            r#type: pb::StrategyType::Recreate.into(),
            ..pb::DeploymentStrategy::default()
        })
    } else if args.max_surge.is_some() || args.max_unavailable.is_some() {
        Some(pb::DeploymentStrategy {
            r#type: pb::StrategyType::RollingUpdate.into(),
            max_surge: args.max_surge.clone().unwrap_or_default(),
            max_unavailable: args.max_unavailable.clone().unwrap_or_default(),
        })
    } else {
        None
    };
    Ok(pb::ApplyDeploymentRequest {
        image: args.image.clone(),
        namespace: args.namespace.namespace.clone(),
        name: args.name.clone().unwrap_or_default(),
        labels: template.labels,
        annotations: template.annotations,
        env: template.env,
        ports: template.ports,
        command: template.command,
        args: template.args,
        resources: template.resources,
        request_id: args.request_id.clone().unwrap_or_default(),
        dry_run: args.dry_run,
        wait_for: pb::RolloutWaitFor::None.into(),
        pod_security: template.pod_security.into(),
        replicas: args.replicas,
        strategy,
        progress_deadline: args
            .progress_deadline
            .map(|deadline| proto_duration(deadline, "--progress-deadline"))
            .transpose()?,
        expose: args.expose,
        change_cause: args.change_cause.clone().unwrap_or_default(),
        ..pb::ApplyDeploymentRequest::default()
    })
}

/// What an apply did, e.g. `created deployment demo/web (nginx:1.27, 3 replicas, pod
/// security baseline)`.
fn applied<'a>(
    response: &pb::ApplyDeploymentResponse,
    deployment: &'a pb::Deployment,
    dry_run: bool,
) -> Change<'a> {
    let profile = profile_name(response.pod_security);
    let what = if dry_run {
        "dry run: would apply"
    } else if response.created {
        "created"
    } else if response.changed {
        "updated"
    } else {
        "unchanged"
    };
    Change {
        kind: "applied",
        text: format!(
            "{what} deployment {}/{} ({}, {} replicas, pod security {profile})",
            deployment.namespace, deployment.name, deployment.image, deployment.replicas
        ),
        changed: response.changed,
        created: Some(response.created),
        dry_run: Some(dry_run),
        pod_security: Some(profile),
        rolled_back_to: None,
        deployment,
    }
}

/// A change without apply's details.
fn change<'a>(
    kind: &'static str,
    text: String,
    changed: bool,
    deployment: &'a pb::Deployment,
) -> Change<'a> {
    Change {
        kind,
        text,
        changed,
        created: None,
        dry_run: None,
        pod_security: None,
        rolled_back_to: None,
        deployment,
    }
}

async fn status(cli: &Cli, args: &DeploymentName, out: &mut Output) -> Result<Success, Failure> {
    let limit = cli.timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT);
    let deadline = Instant::now() + limit;
    let mut client = connect_deployments(&cli.connection).await?;
    let request = rollout_request(&args.namespace.namespace, &args.name, 0);
    out.following(&args.name);
    RolloutFollower::new(&mut client, request, Some((deadline, limit)), true)
        .run(out)
        .await
}

async fn undo(cli: &Cli, args: &UndoArgs, out: &mut Output) -> Result<Success, Failure> {
    let started = Instant::now();
    let mut client = connect_deployments(&cli.connection).await?;
    let request = pb::RollbackDeploymentRequest {
        namespace: args.deployment.namespace.namespace.clone(),
        name: args.deployment.name.clone(),
        to_revision: args.to_revision.unwrap_or(0),
        request_id: args.request_id.clone().unwrap_or_default(),
    };
    let response = call(cli, async |meta| {
        client
            .clone()
            .rollback_deployment(with_meta(meta, request))
            .await
    })
    .await?;
    let deployment = response.deployment.clone().unwrap_or_default();
    out.change(&Change {
        rolled_back_to: Some(response.rolled_back_to),
        ..change(
            "rolled_back",
            format!(
                "deployment {}/{}: {}",
                deployment.namespace, deployment.name, response.message
            ),
            response.changed,
            &deployment,
        )
    });
    if !args.follow.wait {
        return done(deployment);
    }
    follow(cli, &mut client, &deployment, started, out).await
}

async fn history(cli: &Cli, args: &DeploymentName, out: &mut Output) -> Result<Success, Failure> {
    let client = connect_deployments(&cli.connection).await?;
    let request = pb::ListRevisionsRequest {
        namespace: args.namespace.namespace.clone(),
        name: args.name.clone(),
    };
    let response = call(cli, async |meta| {
        client
            .clone()
            .list_revisions(with_meta(meta, request))
            .await
    })
    .await?;
    out.revisions(&args.name, &response.revisions);
    Ok(Success::default())
}

async fn restart(cli: &Cli, args: &RestartArgs, out: &mut Output) -> Result<Success, Failure> {
    let started = Instant::now();
    let mut client = connect_deployments(&cli.connection).await?;
    let request = pb::RestartDeploymentRequest {
        namespace: args.deployment.namespace.namespace.clone(),
        name: args.deployment.name.clone(),
        request_id: args.request_id.clone().unwrap_or_default(),
    };
    let response = call(cli, async |meta| {
        client
            .clone()
            .restart_deployment(with_meta(meta, request))
            .await
    })
    .await?;
    let deployment = response.deployment.clone().unwrap_or_default();
    let text = if response.changed {
        format!(
            "restarted deployment {}/{}: a rolling update replaces every pod",
            deployment.namespace, deployment.name
        )
    } else {
        format!(
            "deployment {}/{} was restarted already for this request ID",
            deployment.namespace, deployment.name
        )
    };
    out.change(&change("restarted", text, response.changed, &deployment));
    if !args.follow.wait {
        return done(deployment);
    }
    follow(cli, &mut client, &deployment, started, out).await
}

async fn scale(cli: &Cli, args: &ScaleArgs, out: &mut Output) -> Result<Success, Failure> {
    let started = Instant::now();
    let mut client = connect_deployments(&cli.connection).await?;
    let request = pb::ScaleDeploymentRequest {
        namespace: args.deployment.namespace.namespace.clone(),
        name: args.deployment.name.clone(),
        replicas: args.replicas,
    };
    let response = call(cli, async |meta| {
        client
            .clone()
            .scale_deployment(with_meta(meta, request))
            .await
    })
    .await?;
    let deployment = response.deployment.clone().unwrap_or_default();
    let text = if response.changed {
        format!(
            "scaled deployment {}/{} to {} replicas",
            deployment.namespace, deployment.name, args.replicas
        )
    } else {
        format!(
            "deployment {}/{} has {} replicas already",
            deployment.namespace, deployment.name, args.replicas
        )
    };
    out.change(&change("scaled", text, response.changed, &deployment));
    if !args.follow.wait {
        return done(deployment);
    }
    follow(cli, &mut client, &deployment, started, out).await
}

async fn get(cli: &Cli, args: &DeploymentName, out: &mut Output) -> Result<Success, Failure> {
    let client = connect_deployments(&cli.connection).await?;
    let request = pb::GetDeploymentRequest {
        namespace: args.namespace.namespace.clone(),
        name: args.name.clone(),
    };
    let response = call(cli, async |meta| {
        client
            .clone()
            .get_deployment(with_meta(meta, request))
            .await
    })
    .await?;
    let deployment = response.deployment.unwrap_or_default();
    out.deployment(&deployment);
    done(deployment)
}

async fn list(cli: &Cli, args: &ListArgs, out: &mut Output) -> Result<Success, Failure> {
    let client = connect_deployments(&cli.connection).await?;
    let request = pb::ListDeploymentsRequest {
        namespace: args.namespace.namespace.clone(),
        label_selector: args.selector.clone().unwrap_or_default(),
    };
    let response = call(cli, async |meta| {
        client
            .clone()
            .list_deployments(with_meta(meta, request))
            .await
    })
    .await?;
    out.deployments(&args.namespace.namespace, &response.deployments);
    Ok(Success::default())
}

async fn delete(
    cli: &Cli,
    args: &DeploymentDeleteArgs,
    out: &mut Output,
) -> Result<Success, Failure> {
    // With --wait the server waits (up to --timeout, 5 minutes by default) and answers once
    // everything is gone; the call's deadline is the same.
    let limit = match (args.wait, cli.timeout) {
        (true, timeout) => timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT),
        (false, timeout) => timeout.unwrap_or(crate::commands::DEFAULT_CALL_TIMEOUT),
    };
    let client = connect_deployments(&cli.connection).await?;
    let request = pb::DeleteDeploymentRequest {
        namespace: args.deployment.namespace.namespace.clone(),
        name: args.deployment.name.clone(),
        wait: args.wait,
        wait_timeout: if args.wait {
            Some(proto_duration(limit, "--timeout")?)
        } else {
            None
        },
        allow_missing: false,
    };
    let response = call_within(limit, async |meta| {
        client
            .clone()
            .delete_deployment(with_meta(meta, request))
            .await
    })
    .await?;
    let deployment = response.deployment.unwrap_or_else(|| pb::Deployment {
        namespace: args.deployment.namespace.namespace.clone(),
        name: args.deployment.name.clone(),
        ..pb::Deployment::default()
    });
    let what = if args.wait { "deleted" } else { "deleting" };
    let text = format!(
        "{what} deployment {}/{} with its ReplicaSets, pods and Service",
        deployment.namespace, deployment.name
    );
    out.change(&change("deleting", text.clone(), true, &deployment));
    Ok(Success {
        summary: args.wait.then_some(text),
        deployment: Some(deployment),
        ..Success::default()
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::args::Command;

    fn apply_args(extra: &[&str]) -> ApplyArgs {
        let mut all = vec![
            "deployctl",
            "deployment",
            "apply",
            "nginx:1.27",
            "-n",
            "demo",
        ];
        all.extend_from_slice(extra);
        match Cli::try_parse_from(all).map(|cli| cli.command) {
            Ok(Command::Deployment(DeploymentCommand::Apply(args))) => *args,
            other => panic!("not an apply: {other:?}"),
        }
    }

    #[test]
    fn apply_sends_the_spec_and_never_asks_the_server_to_wait() {
        let request = apply_request(&apply_args(&[
            "--name",
            "web",
            "--replicas",
            "3",
            "--env",
            "A=1",
            "--max-surge",
            "1",
            "--progress-deadline",
            "90s",
            "--expose",
            "--change-cause",
            "first",
            "--request-id",
            "r1",
        ]))
        .expect("a request");
        assert_eq!((request.name.as_str(), request.replicas), ("web", Some(3)));
        assert_eq!(request.wait_for(), pb::RolloutWaitFor::None);
        assert_eq!(request.env[0].name, "A");
        let strategy = request.strategy.expect("a strategy");
        assert_eq!(strategy.r#type(), pb::StrategyType::RollingUpdate);
        assert_eq!(
            (
                strategy.max_surge.as_str(),
                strategy.max_unavailable.as_str()
            ),
            ("1", "")
        );
        assert_eq!(request.progress_deadline.map(|d| d.seconds), Some(90));
        assert!(request.expose);
        assert_eq!(request.change_cause, "first");
        assert_eq!(request.request_id, "r1");

        let plain = apply_request(&apply_args(&[])).expect("a request");
        assert_eq!((plain.replicas, plain.strategy), (None, None));
        let recreate = apply_request(&apply_args(&["--recreate"])).expect("a request");
        assert_eq!(
            recreate.strategy.map(|s| s.r#type()),
            Some(pb::StrategyType::Recreate)
        );
    }

    #[test]
    fn apply_refuses_a_key_given_twice() {
        let failure =
            apply_request(&apply_args(&["--label", "a=1", "--label", "a=2"])).expect_err("refused");
        assert_eq!(failure.exit, crate::exit::BAD_INPUT);
    }

    #[test]
    fn an_apply_says_what_it_did() {
        let deployment = pb::Deployment {
            namespace: "demo".into(),
            name: "web".into(),
            image: "nginx:1.27".into(),
            replicas: 3,
            ..pb::Deployment::default()
        };
        let response = pb::ApplyDeploymentResponse {
            changed: true,
            created: true,
            pod_security: pb::PodSecurity::Baseline.into(),
            ..pb::ApplyDeploymentResponse::default()
        };
        let change = applied(&response, &deployment, false);
        assert_eq!(
            change.text,
            "created deployment demo/web (nginx:1.27, 3 replicas, pod security baseline)"
        );
        let unchanged = pb::ApplyDeploymentResponse {
            changed: false,
            created: false,
            ..response
        };
        assert!(
            applied(&unchanged, &deployment, false)
                .text
                .starts_with("unchanged ")
        );
        assert!(
            applied(&unchanged, &deployment, true)
                .text
                .starts_with("dry run: ")
        );
    }
}
