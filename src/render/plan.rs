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
    let mut out = reads(plan);
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
        // The access matrix's flags hold whether or not anything changes.
        let flags = access_flags(plan);
        if !flags.is_empty() {
            out.push_str(&format!("\nDatabase access:\n{}\n", flags.join("\n")));
        }
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
        if let Some(note) = data_note(change) {
            out.push_str(&format!("        # {note}\n"));
        }
        for holding in &change.holdings {
            let place = match &holding.database {
                Some(database) => format!("in database {database}"),
                None => "cluster-wide (databases, tablespaces)".to_string(),
            };
            let objects = |count: u64| {
                if count == 1 {
                    "1 object".to_string()
                } else {
                    format!("{count} objects")
                }
            };
            if holding.owns > 0 {
                out.push_str(&format!(
                    "        # owns {} {place}: reassigned to the master user, kept\n",
                    objects(holding.owns)
                ));
            }
            if holding.privileges > 0 {
                out.push_str(&format!(
                    "        # holds privileges on {} {place}: revoked\n",
                    objects(holding.privileges)
                ));
            }
        }
        if let Some(lost) = &change.data_loss {
            let line = match plan.mode {
                Mode::Normal => format!(
                    "        # ! destroys {lost}; apply needs --allow-destroy {}",
                    change.address
                ),
                Mode::Destroy => format!("        # destroys {lost}"),
            };
            out.push_str(&style.paint(Color::Red, &line));
            out.push('\n');
        }
        let lines = attribute_lines(change);
        let width = lines
            .iter()
            .map(|(_, name, _)| name.chars().count())
            .max()
            .unwrap_or(0);
        for (sign, name, value) in lines {
            let mut value = value.into_iter();
            out.push_str(&format!(
                "        {} {name:<width$} = {}\n",
                style.paint(color_of_sign(sign), sign),
                value.next().unwrap_or_default()
            ));
            for line in value {
                out.push_str(&line);
                out.push('\n');
            }
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
    out.push_str(&consent_summary(plan, style));
    out
}

/// The plan's data loss, once more at its end: what apply refuses without `--allow-destroy`,
/// and the consent a saved plan already carries.
fn consent_summary(plan: &Plan, style: Style) -> String {
    let losses: Vec<&ResourceChange> = plan.data_losses().collect();
    if losses.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n{}\n",
        style.paint(
            Color::Red,
            "Data loss: apply changes nothing unless each of these is named with --allow-destroy:"
        )
    );
    for change in losses {
        let consented = if plan.allowed_destroy.contains(&change.address) {
            " (allowed in this plan)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {}: {}{consented}\n",
            change.address,
            change.data_loss.as_deref().unwrap_or_default()
        ));
    }
    out
}

/// Who may log in as whom after this plan ([`Plan::access`], computed by the planner), so a
/// reviewer sees who gets in without reading JSON.
fn access_summary(plan: &Plan) -> String {
    let or_unknown = |value: &Option<String>| value.clone().unwrap_or_else(|| UNKNOWN.to_string());
    let lines: Vec<String> = plan
        .access
        .database
        .iter()
        .map(|access| {
            let entry = &access.service_account;
            let mechanism = match access.identity {
                crate::spec::model::Identity::PodIdentity => "EKS Pod Identity",
                crate::spec::model::Identity::Irsa => "IRSA",
            };
            if access.revoked {
                return format!("  - {entry}: loses its database access ({mechanism})");
            }
            // A database other than the `database:` shorthand's is named.
            let database = match access.database.as_deref() {
                Some(database) if database != crate::spec::model::MAIN_DATABASE => {
                    format!("database {database}, ")
                }
                _ => String::new(),
            };
            format!(
                "  {entry} -> {database}database user {}\n      on cluster {} (resource id {})\n      through IAM role {} ({mechanism})",
                or_unknown(&access.db_user),
                or_unknown(&access.cluster),
                or_unknown(&access.cluster_resource_id),
                or_unknown(&access.iam_role)
            )
        })
        .collect();
    let admins: Vec<String> = plan
        .access
        .cluster_admins
        .iter()
        .map(|admin| {
            if admin.revoked {
                format!("  - {}: loses cluster-admin", admin.principal_arn)
            } else {
                format!("  {}", admin.principal_arn)
            }
        })
        .collect();
    let mut lines = lines;
    lines.extend(access_flags(plan));
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

/// The access matrix's flags, one `!` line each: database users no service account may use,
/// and users of a database's cluster the stack does not declare.
fn access_flags(plan: &Plan) -> Vec<String> {
    let mut flags = Vec::new();
    flags.extend(plan.access.unused_users.iter().map(|user| {
        let user = match user.split_once('/') {
            Some((database, user)) => format!("{user} of database {database}"),
            None => user.clone(),
        };
        format!("  ! database user {user}: no service account may log in as it (no `access` entry names it)")
    }));
    flags.extend(plan.access.undeclared_users.iter().map(|found| {
        let whose = if found.made_by_this_stack {
            "this stack made it and no longer records it: pwless leaves it; declare it and `pwless import` it, or drop it yourself"
        } else {
            "pwless leaves it: it never touches a user it did not make"
        };
        let database = if found.database == crate::spec::model::MAIN_DATABASE {
            String::new()
        } else {
            format!(" of database {}", found.database)
        };
        format!(
            "  ! user {}{database} may log in to the cluster but is not in the stack: {whose}",
            found.user
        )
    }));
    flags
}

/// What happens to the data of an Aurora cluster this change deletes or replaces.
fn data_note(change: &ResourceChange) -> Option<String> {
    if change.kind != crate::graph::ResourceKind::RdsCluster
        || !matches!(change.action, Action::Delete | Action::Replace)
    {
        return None;
    }
    if let Some(snapshot) = &change.final_snapshot {
        return Some(format!("a final snapshot is kept: {snapshot}"));
    }
    let gone = change
        .reason
        .as_deref()
        .is_some_and(|reason| reason.starts_with("it is already gone"));
    (!gone).then(|| "no final snapshot (final_snapshot: false): its data is lost".to_string())
}

fn color_of_sign(sign: &str) -> Color {
    match sign {
        "+" => Color::Green,
        "~" => Color::Yellow,
        _ => Color::Red,
    }
}

/// (sign, attribute, rendered value lines) for the attributes worth showing. The first line
/// of a value follows `name = `; the others are complete lines, indented for a sign at column
/// [`ATTRIBUTE_INDENT`].
fn attribute_lines(change: &ResourceChange) -> Vec<(&'static str, String, Vec<String>)> {
    let empty = BTreeMap::new();
    let after = change.after.as_ref().unwrap_or(&empty);
    match change.action {
        Action::Create => {
            let mut lines: Vec<(&str, String, Vec<String>)> = after
                .iter()
                .map(|(name, value)| {
                    (
                        "+",
                        name.clone(),
                        Doc::of_value(value).lines("+", ATTRIBUTE_INDENT),
                    )
                })
                .collect();
            lines.extend(change.after_unknown.iter().map(|(name, expr)| {
                (
                    "+",
                    name.clone(),
                    Doc::of_expr(expr).lines("+", ATTRIBUTE_INDENT),
                )
            }));
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
                        .map_or(Doc::Scalar("null".into()), Doc::of_value);
                    let new = match (after.get(name), change.after_unknown.get(name)) {
                        (Some(value), _) => Doc::of_value(value),
                        (None, Some(expr)) => Doc::of_expr(expr),
                        (None, None) => Doc::Scalar("null".into()),
                    };
                    let mut lines = old.diff(&new, ATTRIBUTE_INDENT);
                    if change.replace_paths.contains(name)
                        && let Some(first) = lines.first_mut()
                    {
                        first.push_str("  # forces replacement");
                    }
                    ("~", name.clone(), lines)
                })
                .collect()
        }
        Action::Delete | Action::NoOp => Vec::new(),
    }
}

/// The column of an attribute's sign in the human plan.
const ATTRIBUTE_INDENT: usize = 8;

/// A value as the human plan shows it: scalars on one line, every item of a list and every
/// key of a map on its own line (as Terraform shows them), `(known after apply)` per item.
#[derive(Debug, Clone, PartialEq)]
enum Doc {
    /// A scalar as JSON text, or `(known after apply)`.
    Scalar(String),
    /// A string of several lines, shown as a heredoc (`<<-EOT`), line by line, as Terraform
    /// shows one.
    Text(Vec<String>),
    List(Vec<Doc>),
    Map(Vec<(String, Doc)>),
}

impl Doc {
    fn of_value(value: &Value) -> Doc {
        match value {
            Value::Array(items) => Doc::List(items.iter().map(Doc::of_value).collect()),
            Value::Object(entries) => Doc::Map(
                entries
                    .iter()
                    .map(|(key, value)| (key.clone(), Doc::of_value(value)))
                    .collect(),
            ),
            Value::String(text) if text.trim_end_matches('\n').contains('\n') => Doc::Text(
                text.trim_end_matches('\n')
                    .lines()
                    .map(str::to_string)
                    .collect(),
            ),
            scalar => Doc::Scalar(serde_json::to_string(scalar).unwrap_or_default()),
        }
    }

    fn of_expr(expr: &Expr) -> Doc {
        match expr {
            Expr::Value(value) => Doc::of_value(value),
            Expr::Ref(_) => Doc::Scalar(UNKNOWN.to_string()),
            Expr::List(items) => Doc::List(items.iter().map(Doc::of_expr).collect()),
            Expr::Map(entries) => Doc::Map(
                entries
                    .iter()
                    .map(|(key, value)| (key.clone(), Doc::of_expr(value)))
                    .collect(),
            ),
        }
    }

    fn is_scalar(&self) -> bool {
        match self {
            Doc::Scalar(_) => true,
            Doc::Text(_) => false,
            Doc::List(items) => items.is_empty(),
            Doc::Map(entries) => entries.is_empty(),
        }
    }

    /// The value's lines, every item marked with `sign`; `indent` is the column of the sign
    /// of the line the value belongs to.
    fn lines(&self, sign: &str, indent: usize) -> Vec<String> {
        let inner = " ".repeat(indent + 4);
        let close = " ".repeat(indent + 2);
        match self {
            Doc::Scalar(text) => vec![text.clone()],
            Doc::Text(lines) => {
                let body = " ".repeat(indent + 6);
                let mut out = vec!["<<-EOT".to_string()];
                out.extend(lines.iter().map(|line| {
                    if line.is_empty() {
                        String::new()
                    } else {
                        format!("{body}{line}")
                    }
                }));
                out.push(format!("{close}EOT"));
                out
            }
            Doc::List(items) if items.is_empty() => vec!["[]".into()],
            Doc::Map(entries) if entries.is_empty() => vec!["{}".into()],
            Doc::List(items) => {
                let mut out = vec!["[".to_string()];
                for item in items {
                    push_item(&mut out, &inner, sign, item, indent);
                }
                out.push(format!("{close}]"));
                out
            }
            Doc::Map(entries) => {
                let width = entries
                    .iter()
                    .map(|(key, _)| key_text(key).chars().count())
                    .max()
                    .unwrap_or(0);
                let mut out = vec!["{".to_string()];
                for (key, value) in entries {
                    let key = format!("{:<width$} = ", key_text(key));
                    push_entry(&mut out, &inner, sign, &key, value.lines(sign, indent + 4));
                }
                out.push(format!("{close}}}"));
                out
            }
        }
    }

    /// The change from `self` to `new`: `old -> new` for scalars, key by key for maps (the
    /// unchanged keys counted, not shown), item by item for lists.
    fn diff(&self, new: &Doc, indent: usize) -> Vec<String> {
        let inner = " ".repeat(indent + 4);
        let close = " ".repeat(indent + 2);
        match (self, new) {
            (Doc::Map(old), Doc::Map(new)) if !old.is_empty() && !new.is_empty() => {
                let mut keys: Vec<&String> = old.iter().map(|(key, _)| key).collect();
                keys.extend(
                    new.iter()
                        .map(|(key, _)| key)
                        .filter(|key| !old.iter().any(|(known, _)| known == *key)),
                );
                let width = keys
                    .iter()
                    .map(|key| key_text(key).chars().count())
                    .max()
                    .unwrap_or(0);
                let find = |entries: &'_ [(String, Doc)], key: &str| -> Option<Doc> {
                    entries
                        .iter()
                        .find(|(known, _)| known == key)
                        .map(|(_, value)| value.clone())
                };
                let mut out = vec!["{".to_string()];
                let mut unchanged = 0;
                for key in keys {
                    let label = format!("{:<width$} = ", key_text(key));
                    match (find(old, key), find(new, key)) {
                        (Some(before), Some(after)) if before == after => unchanged += 1,
                        (Some(before), Some(after)) => push_entry(
                            &mut out,
                            &inner,
                            "~",
                            &label,
                            before.diff(&after, indent + 4),
                        ),
                        (Some(before), None) => {
                            let mut lines = before.lines("-", indent + 4);
                            if let Some(last) = lines.last_mut() {
                                last.push_str(" -> null");
                            }
                            push_entry(&mut out, &inner, "-", &label, lines)
                        }
                        (None, Some(after)) => {
                            push_entry(&mut out, &inner, "+", &label, after.lines("+", indent + 4))
                        }
                        (None, None) => {}
                    }
                }
                if unchanged > 0 {
                    out.push(format!(
                        "{inner}  # ({unchanged} unchanged {} hidden)",
                        if unchanged == 1 {
                            "element"
                        } else {
                            "elements"
                        }
                    ));
                }
                out.push(format!("{close}}}"));
                out
            }
            // Lists of maps of one length (a policy's grants): item by item, each changed
            // one with its own nested diff, as Terraform shows a list of objects.
            (Doc::List(old), Doc::List(new))
                if old.len() == new.len()
                    && old
                        .iter()
                        .chain(new)
                        .all(|item| matches!(item, Doc::Map(entries) if !entries.is_empty())) =>
            {
                let mut out = vec!["[".to_string()];
                for (before, after) in old.iter().zip(new) {
                    if before == after {
                        push_item(&mut out, &inner, " ", after, indent);
                    } else {
                        push_entry(&mut out, &inner, "~", "", before.diff(after, indent + 4));
                        if let Some(last) = out.last_mut() {
                            last.push(',');
                        }
                    }
                }
                out.push(format!("{close}]"));
                out
            }
            (Doc::List(old), Doc::List(new)) if !old.is_empty() && !new.is_empty() => {
                let mut out = vec!["[".to_string()];
                let mut entry =
                    |sign: &str, item: &Doc| push_item(&mut out, &inner, sign, item, indent);
                for item in old.iter().filter(|item| !new.contains(item)) {
                    entry("-", item);
                }
                for item in new {
                    // An unknown item may turn out to be any value: it is never "unchanged".
                    let kept = old.contains(item) && *item != Doc::Scalar(UNKNOWN.to_string());
                    entry(if kept { " " } else { "+" }, item);
                }
                out.push(format!("{close}]"));
                out
            }
            (old, new) if old.is_scalar() && new.is_scalar() => {
                vec![format!(
                    "{} -> {}",
                    old.lines("-", indent)[0],
                    new.lines("+", indent)[0]
                )]
            }
            // A change of shape (null to a map, a map to a list): the old value, then the new.
            (old, new) => {
                let mut lines = old.lines("-", indent);
                let mut after = new.lines("+", indent).into_iter();
                if let (Some(last), Some(first)) = (lines.last_mut(), after.next()) {
                    last.push_str(" -> ");
                    last.push_str(&first);
                }
                lines.extend(after);
                lines
            }
        }
    }
}

/// Appends one entry of a list or map: `{inner}{sign} {label}{first line}`, then its other lines.
fn push_entry(out: &mut Vec<String>, inner: &str, sign: &str, label: &str, lines: Vec<String>) {
    let mut lines = lines.into_iter();
    out.push(format!(
        "{inner}{sign} {label}{}",
        lines.next().unwrap_or_default()
    ));
    out.extend(lines);
}

/// Appends one list item, marked with `sign` and ended by a comma, as Terraform lists items.
fn push_item(out: &mut Vec<String>, inner: &str, sign: &str, item: &Doc, indent: usize) {
    push_entry(out, inner, sign, "", item.lines(sign, indent + 4));
    if let Some(last) = out.last_mut() {
        last.push(',');
    }
}

/// A map key as shown: bare when it is a plain identifier, else quoted (`"pwless:address"`).
fn key_text(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        key.to_string()
    } else {
        serde_json::to_string(key).unwrap_or_else(|_| key.to_string())
    }
}

/// The existing resources the plan read, with the values it used: one line each.
fn reads(plan: &Plan) -> String {
    if plan.reads.is_empty() {
        return String::new();
    }
    let mut out = String::from("pwless read these existing resources, and never changes them:\n");
    for read in &plan.reads {
        let values: Vec<String> = read
            .values
            .iter()
            .map(|(name, value)| match value {
                serde_json::Value::String(text) => format!("{name}={text}"),
                other => format!("{name}={other}"),
            })
            .collect();
        out.push_str(&format!(
            "  <= {}  {}  {}\n",
            read.address,
            read.id,
            values.join(" ")
        ));
    }
    out.push('\n');
    out
}
