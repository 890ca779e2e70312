//! `zae-limiter limits plan|apply|diff|cfn-template -f FILE`: the stored limits of a
//! namespace declared in a YAML manifest, planned against the live values (exit 0: nothing
//! to do, 2: changes, 1: error, like `terraform plan -detailed-exitcode`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use serde_json::json;
use zae_limiter::manifest::{Action, Change, LimitDelta, Manifest, Plan};
use zae_limiter::DEFAULT_NAMESPACE;

use super::store::{self, print_json};
use super::Cli;
use crate::output::{exit, CliError, Output};

/// The `limits` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Show what `apply` would change: `+` create, `~` update (old -> new), `-` delete,
    /// `=` take over as is. Exit 0 when there is nothing to do, 2 when there are changes.
    #[command(after_help = "Example: zae-limiter limits plan -f limits.yaml --output json")]
    Plan(FileArgs),
    /// Apply the planned changes (each conditioned on the value the plan read), then record
    /// the managed set in the namespace's #PROVISIONER record. Asks for confirmation unless
    /// --yes; without a terminal it refuses without --yes.
    #[command(after_help = "Example: zae-limiter -n my-app limits apply -f limits.yaml --yes")]
    Apply {
        #[command(flatten)]
        file: FileArgs,
        /// Apply without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Drift between the file and the table (including imperative changes made after the
    /// last apply). Exit 0 when there is none, 2 when there is.
    #[command(after_help = "Example: zae-limiter limits diff -f limits.yaml")]
    Diff(FileArgs),
    /// Print a CloudFormation template applying the manifest through the stack's
    /// provisioner function (it imports the `{name}-ProvisionerArn` export).
    #[command(
        after_help = "Example: zae-limiter -n my-app limits cfn-template -f limits.yaml > limits-stack.yaml"
    )]
    CfnTemplate(FileArgs),
    /// Run the provisioner handler (what the stack's provisioner Lambda runs) once on an
    /// event file: a CloudFormation custom-resource event (answered at its ResponseURL) or
    /// `{"action": "plan"|"apply", "namespace": ..., "manifest": ...}`. Prints the answer.
    /// The table is the event's TableName/table_name, else --name.
    #[command(after_help = "Example: zae-limiter -n my-app limits handle-event -f event.json")]
    HandleEvent {
        /// The event (JSON; `-` reads stdin).
        #[arg(long, short = 'f', value_name = "FILE")]
        file: PathBuf,
    },
}

/// The manifest file.
#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// The manifest (YAML or JSON; `-` reads stdin). Its `namespace` is used; without one,
    /// --namespace applies (an explicit -N that differs from the file's is an error).
    #[arg(long, short = 'f', value_name = "FILE")]
    file: PathBuf,
}

impl FileArgs {
    /// Read and validate the manifest; the namespace comes from the file or from -N.
    fn load(&self, cli: &Cli) -> Result<Manifest, CliError> {
        let shown = self.file.display().to_string();
        let text = read(&self.file)?;
        let mut manifest = Manifest::from_yaml(&text).map_err(|e| {
            let at = e
                .location
                .map_or(String::new(), |(line, col)| format!(":{line}:{col}"));
            CliError::new(exit::ERROR, format!("{shown}{at}: {e}"))
        })?;
        match &manifest.namespace {
            None => manifest.namespace = Some(cli.namespace.clone()),
            Some(ns) if cli.namespace_given && cli.namespace != *ns => {
                return Err(CliError::new(
                    exit::ERROR,
                    format!(
                        "{shown} targets namespace '{ns}' but --namespace is '{}': drop one",
                        cli.namespace
                    ),
                ))
            }
            Some(_) => {}
        }
        Ok(manifest)
    }
}

/// The text of `file` (`-`: stdin).
fn read(file: &std::path::Path) -> Result<String, CliError> {
    let shown = file.display().to_string();
    if shown == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::new(exit::ERROR, format!("cannot read stdin: {e}")))
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| CliError::new(exit::ERROR, format!("cannot read {shown}: {e}")))
    }
}

/// Run a `limits` subcommand.
pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<(), CliError> {
    match cmd {
        Cmd::Plan(f) => {
            let (manifest, plan) = plan(cli, f).await?;
            show(cli, &manifest, &plan, false)?;
            changes_exit(!plan.is_empty())
        }
        Cmd::Diff(f) => {
            let (manifest, plan) = plan(cli, f).await?;
            show(cli, &manifest, &plan, true)?;
            let drift = plan.drift().count();
            changes_exit(drift > 0)
        }
        Cmd::Apply { file, yes } => apply(cli, file, *yes).await,
        Cmd::HandleEvent { file } => {
            let text = read(file)?;
            let event: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                CliError::new(exit::ERROR, format!("{}: not JSON: {e}", file.display()))
            })?;
            let env = crate::lambda::provisioner::Env {
                table: Some(cli.name.clone()),
                endpoint_url: cli.endpoint_url.clone(),
            };
            let answer = crate::lambda::provisioner::handle_with(event, &env)
                .await
                .map_err(|e| CliError::new(exit::ERROR, e))?;
            Ok(print_json(&answer)?)
        }
        Cmd::CfnTemplate(f) => {
            let manifest = f.load(cli)?;
            let template = manifest.to_cfn_template(&cli.name);
            match cli.output {
                Output::Json => {
                    let doc: serde_json::Value = serde_norway::from_str(&template)
                        .map_err(|e| CliError::new(exit::ERROR, e.to_string()))?;
                    print_json(&doc)?;
                }
                Output::Table => crate::output::emit(template.trim_end()),
            }
            Ok(())
        }
    }
}

/// Exit 2 (and no message) when there are changes.
fn changes_exit(changes: bool) -> Result<(), CliError> {
    if changes {
        Err(CliError::new(2, ""))
    } else {
        Ok(())
    }
}

async fn plan(cli: &Cli, f: &FileArgs) -> Result<(Manifest, Plan), CliError> {
    let manifest = f.load(cli)?;
    // a handle on the table; the plan uses the manifest's namespace (which may not exist yet)
    let limiter = store::limiter_in(cli, DEFAULT_NAMESPACE).await?;
    let plan = manifest.plan(&limiter).await?;
    Ok((manifest, plan))
}

async fn apply(cli: &Cli, f: &FileArgs, yes: bool) -> Result<(), CliError> {
    let manifest = f.load(cli)?;
    let limiter = store::limiter_in(cli, DEFAULT_NAMESPACE).await?;
    let plan = manifest.plan(&limiter).await?;
    if plan.is_empty() {
        return show(cli, &manifest, &plan, false);
    }
    if cli.output == Output::Table {
        show(cli, &manifest, &plan, false)?;
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::new(
                exit::ERROR,
                "refusing to apply without confirmation: stdin is not a terminal; pass --yes",
            ));
        }
        eprint!(
            "Apply these changes to namespace '{}'? [y/N] ",
            plan.namespace
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| CliError::new(exit::ERROR, e.to_string()))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(CliError::new(exit::ERROR, "not applied"));
        }
    }
    let report = plan.apply(&limiter).await.map_err(|e| {
        let code = match &e.source {
            zae_limiter::Error::Unavailable { .. } => exit::UNAVAILABLE,
            _ => exit::ERROR,
        };
        CliError::new(code, e.to_string())
    })?;
    match cli.output {
        Output::Json => print_json(&json!({
            "namespace": plan.namespace,
            "plan": plan.to_json(),
            "applied": report,
        }))?,
        Output::Table => crate::output::emit(&format!(
            "Applied to namespace '{}': {} created, {} updated, {} deleted, {} taken over \
             ({} writes).",
            plan.namespace,
            report.created,
            report.updated,
            report.deleted,
            report.adopted,
            report.writes
        )),
    }
    Ok(())
}

/// Print the plan (or only its drift).
fn show(cli: &Cli, manifest: &Manifest, plan: &Plan, drift_only: bool) -> Result<(), CliError> {
    if cli.output == Output::Json {
        let mut doc = plan.to_json();
        if drift_only {
            doc = json!({
                "namespace": plan.namespace,
                "drift": plan.drift().map(Change::to_json).collect::<Vec<_>>(),
                "applied_hash": plan.before.as_ref().map(|b| b.applied_hash.clone()),
                "file_hash": manifest.hash(),
            });
        }
        return Ok(print_json(&doc)?);
    }
    let changes: Vec<&Change> = if drift_only {
        plan.drift().collect()
    } else {
        plan.changes.iter().collect()
    };
    let ns = &plan.namespace;
    if changes.is_empty() && (drift_only || plan.is_empty()) {
        let what = if drift_only { "No drift" } else { "No changes" };
        crate::output::emit(&format!(
            "{what}: namespace '{ns}' matches the file ({} items).",
            plan.unchanged + plan.count(Action::Adopt)
        ));
        return Ok(());
    }
    let mut out = String::new();
    if plan.register_namespace && !drift_only {
        out.push_str(&format!("+ namespace '{ns}' (registered first)\n"));
    }
    let width = changes.iter().map(|c| heading(c).len()).max().unwrap_or(0);
    for c in &changes {
        out.push_str(&format!(
            "{} {:width$}  {}\n",
            c.action.sign(),
            heading(c),
            detail(c)
        ));
    }
    if drift_only {
        out.push_str(&format!(
            "Drift: {} item(s) in namespace '{ns}' differ from the file.",
            changes.len()
        ));
    } else {
        let record = if plan.changes.is_empty() && plan.record_stale() {
            " The #PROVISIONER record is rewritten."
        } else {
            ""
        };
        out.push_str(&format!(
            "Plan: {} to create, {} to update, {} to delete, {} to take over, {} unchanged.{record}",
            plan.count(Action::Create),
            plan.count(Action::Update),
            plan.count(Action::Delete),
            plan.count(Action::Adopt),
            plan.unchanged,
        ));
    }
    crate::output::emit(&out);
    Ok(())
}

/// `system`, `resource gpt-4`, `entity user-1/gpt-4`.
fn heading(c: &Change) -> String {
    let target = zae_limiter::manifest::target(&c.scope);
    match c.scope.level() {
        "system" => "system".to_string(),
        "resource" => format!("resource {target}"),
        _ => format!("entity {target}"),
    }
}

fn limits_text(c: Option<&zae_limiter::StoredConfig>) -> String {
    let Some(c) = c else {
        return String::new();
    };
    let mut parts: Vec<String> = c.limits.iter().map(|l| l.to_string()).collect();
    if let Some(p) = c.on_unavailable {
        parts.push(format!("on_unavailable={}", policy(Some(p))));
    }
    parts.join(" ")
}

fn policy(p: Option<zae_limiter::OnUnavailable>) -> &'static str {
    match p {
        Some(zae_limiter::OnUnavailable::Allow) => "allow",
        Some(zae_limiter::OnUnavailable::Block) => "block",
        None => "unset",
    }
}

fn detail(c: &Change) -> String {
    match c.action {
        Action::Create => limits_text(c.new.as_ref()),
        Action::Delete => limits_text(c.old.as_ref()),
        Action::Adopt => format!(
            "{} (set imperatively; managed from now on)",
            limits_text(c.new.as_ref())
        ),
        Action::Forget => "(already gone; no longer managed)".to_string(),
        Action::Update => {
            let mut parts: Vec<String> = c
                .limit_deltas()
                .iter()
                .map(|d| match d {
                    LimitDelta::Added(l) => format!("+{l}"),
                    LimitDelta::Removed(l) => format!("-{l}"),
                    LimitDelta::Changed { old, new } => format!("{old} -> {new}"),
                })
                .collect();
            if let Some((old, new)) = c.policy_delta() {
                parts.push(format!("on_unavailable {} -> {}", policy(old), policy(new)));
            }
            let mut text = parts.join(", ");
            if c.takeover {
                text.push_str(" (set imperatively; taken over)");
            }
            text
        }
    }
}
