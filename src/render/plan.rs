//! A plan as people read it (the legend users know from Terraform) and as JSON.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Color, Style};
use crate::graph::Expr;
use crate::plan::{Action, Mode, Plan, ResourceChange};

const UNKNOWN: &str = "(known after apply)";

fn symbol(action: Action) -> &'static str {
    match action {
        Action::NoOp => " ",
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace => "-/+",
        Action::Delete => "-",
    }
}

fn color(action: Action) -> Color {
    match action {
        Action::NoOp => Color::Dim,
        Action::Create => Color::Green,
        Action::Update => Color::Yellow,
        Action::Replace | Action::Delete => Color::Red,
    }
}

/// The documented machine-readable plan (docs/plan-json.md): the [`Plan`] itself.
pub fn json(plan: &Plan) -> String {
    // A Plan holds only strings, maps and JSON values: serialising it cannot fail.
    let mut text = serde_json::to_string_pretty(plan)
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    text.push('\n');
    text
}

pub fn human(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    let changing: Vec<&ResourceChange> = plan
        .resource_changes
        .iter()
        .filter(|change| change.action != Action::NoOp)
        .collect();
    if changing.is_empty() {
        out.push_str(&style.paint(Color::Bold, "No changes."));
        out.push_str(match plan.mode {
            Mode::Normal => " The infrastructure matches the stack.\n",
            Mode::Destroy => " There is nothing to destroy.\n",
        });
        return out;
    }

    out.push_str("pwless uses these symbols for its actions:\n");
    for action in [
        Action::Create,
        Action::Update,
        Action::Replace,
        Action::Delete,
    ] {
        if changing.iter().any(|change| change.action == action) {
            let meaning = match action {
                Action::Create => "create",
                Action::Update => "update in-place",
                Action::Replace => "replace (destroy, then create)",
                Action::Delete => "destroy",
                Action::NoOp => "",
            };
            out.push_str(&format!(
                "{:>5} {meaning}\n",
                style.paint(color(action), symbol(action))
            ));
        }
    }
    out.push_str(&format!(
        "\npwless will perform the following actions on stack {}:\n",
        style.paint(Color::Bold, &plan.stack)
    ));

    for change in changing {
        out.push('\n');
        let mut header = format!(
            "{:>5} {}",
            style.paint(color(change.action), symbol(change.action)),
            style.paint(Color::Bold, &change.address)
        );
        if let Some(reason) = &change.reason {
            header.push_str(&format!("  # {reason}"));
        }
        out.push_str(&header);
        out.push('\n');
        let lines = attribute_lines(change);
        let width = lines
            .iter()
            .map(|(_, name, _)| name.chars().count())
            .max()
            .unwrap_or(0);
        for (sign, name, text) in lines {
            out.push_str(&format!(
                "        {} {name:<width$} = {text}\n",
                style.paint(color_of_sign(sign), sign)
            ));
        }
    }

    let summary = plan.summary;
    let access = access_summary(plan);
    out.push_str(&format!(
        "\n{} {} to add, {} to change, {} to destroy.\n",
        style.paint(Color::Bold, "Plan:"),
        summary.add,
        summary.change,
        summary.destroy
    ));
    out.push_str(&access);
    out
}

/// Who may log in as whom after this plan: one line per `access` entry, read from the planned
/// IRSA roles and policies, so a reviewer sees who gets in without reading JSON.
fn access_summary(plan: &Plan) -> String {
    if plan.mode == Mode::Destroy {
        return String::new();
    }
    let field = |change: &ResourceChange, input: &str, key: &str| -> String {
        if let Some(value) = change
            .after
            .as_ref()
            .and_then(|after| after.get(input))
            .and_then(|value| value.get(key))
        {
            return value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
        }
        match change.after_unknown.get(input) {
            Some(Expr::Map(entries)) => match entries.get(key) {
                Some(Expr::Value(value)) => value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string),
                _ => UNKNOWN.to_string(),
            },
            _ => UNKNOWN.to_string(),
        }
    };
    let text = |change: Option<&ResourceChange>, input: &str| -> String {
        change
            .and_then(|change| {
                change
                    .after
                    .as_ref()?
                    .get(input)?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| UNKNOWN.to_string())
    };
    let cluster = text(plan.change("aws_rds_cluster.main"), "cluster_identifier");
    let mut lines = Vec::new();
    for change in &plan.resource_changes {
        let Some(entry) = change
            .address
            .strip_prefix("aws_iam_role_policy.irsa[")
            .and_then(|rest| rest.strip_suffix(']'))
        else {
            continue;
        };
        if change.action == Action::Delete {
            lines.push(format!("  - {entry}: loses its database access"));
            continue;
        }
        let role = text(plan.change(&format!("aws_iam_role.irsa[{entry}]")), "name");
        let user = field(change, "rds_db_connect", "db_user");
        let resource_id = field(change, "rds_db_connect", "cluster_resource_id");
        lines.push(format!("  {entry}  ->  database user {user} on cluster {cluster}, resource id {resource_id}, through IAM role {role}"));
    }
    let mut admins = Vec::new();
    for change in &plan.resource_changes {
        let Some(principal) = change
            .address
            .strip_prefix("aws_eks_access_entry.admin[")
            .and_then(|rest| rest.strip_suffix(']'))
        else {
            continue;
        };
        admins.push(if change.action == Action::Delete {
            format!("  - {principal}: loses cluster-admin")
        } else {
            format!("  {principal}")
        });
    }
    let mut summary = String::new();
    if !lines.is_empty() {
        summary.push_str(&format!(
            "\nDatabase access (Kubernetes service account -> IAM-only database user):\n{}\n",
            lines.join("\n")
        ));
    }
    if !admins.is_empty() {
        summary.push_str(&format!(
            "\nKubernetes API access (cluster-admin through EKS access entries):\n{}\n",
            admins.join("\n")
        ));
    }
    summary
}

fn color_of_sign(sign: &str) -> Color {
    match sign {
        "+" => Color::Green,
        "~" => Color::Yellow,
        _ => Color::Red,
    }
}

/// (sign, attribute, rendered value) for the attributes worth showing.
fn attribute_lines(change: &ResourceChange) -> Vec<(&'static str, String, String)> {
    let empty = BTreeMap::new();
    let after = change.after.as_ref().unwrap_or(&empty);
    match change.action {
        Action::Create => {
            let mut lines: Vec<(&str, String, String)> = after
                .iter()
                .map(|(name, value)| ("+", name.clone(), value_text(value)))
                .collect();
            lines.extend(
                change
                    .after_unknown
                    .iter()
                    .map(|(name, expr)| ("+", name.clone(), expr_text(expr))),
            );
            lines.sort_by(|a, b| a.1.cmp(&b.1));
            lines
        }
        Action::Update | Action::Replace => {
            let before = change.before.as_ref().unwrap_or(&empty);
            change
                .changed
                .iter()
                .map(|name| {
                    let old = before
                        .get(name)
                        .map_or_else(|| "null".to_string(), value_text);
                    let new = match (after.get(name), change.after_unknown.get(name)) {
                        (Some(value), _) => value_text(value),
                        (None, Some(expr)) => expr_text(expr),
                        (None, None) => "null".to_string(),
                    };
                    let forces = if change.replace_paths.contains(name) {
                        "  # forces replacement"
                    } else {
                        ""
                    };
                    ("~", name.clone(), format!("{old} -> {new}{forces}"))
                })
                .collect()
        }
        Action::Delete | Action::NoOp => Vec::new(),
    }
}

fn value_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Like [`value_text`], with `(known after apply)` where a reference is still unresolved.
fn expr_text(expr: &Expr) -> String {
    match expr {
        Expr::Value(value) => value_text(value),
        Expr::Ref(_) => UNKNOWN.to_string(),
        Expr::List(items) => format!(
            "[{}]",
            items.iter().map(expr_text).collect::<Vec<_>>().join(",")
        ),
        Expr::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(key, value)| format!(
                    "{}:{}",
                    value_text(&Value::String(key.clone())),
                    expr_text(value)
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}
