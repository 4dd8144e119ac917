//! Moving a stack's state by hand, safely: `state push` (terraform's lineage and serial rules)
//! and `state migrate` (mark the old place moved, copy, verify).

use super::UserError;
use super::run::{open_state, open_store};
use crate::exec::{Event, Events};
use crate::state::{Location, State, StateStore};

/// `pwless state push`: replaces the state at `location` with `bytes` (a state as `state pull`
/// prints it; `source` names it in messages), under the lock. Refused, changing nothing, for a
/// document that is not a state, a state of another stack, a migration's marker, another
/// lineage, or a serial older than the current one. Gives back the state as written (its
/// serial the next one).
pub async fn push(
    location: &Location,
    stack: &str,
    source: &str,
    bytes: &[u8],
    events: &dyn Events,
) -> anyhow::Result<State> {
    let mut pushed = crate::state::store::parse_named(source, "fix it and push again", bytes)?;
    if pushed.stack != stack {
        return Err(UserError(format!(
            "{source} is the state of stack `{}`, not `{stack}`",
            pushed.stack
        ))
        .into());
    }
    if pushed.moved_to.is_some() {
        return Err(UserError(format!(
            "{source} is the marker a migration left behind, not a state; nothing was changed"
        ))
        .into());
    }
    let mut opened = open_state(location, stack, "state push", events).await?;
    let result = async {
        if opened.existed {
            let current = &opened.state;
            if pushed.lineage != current.lineage {
                return Err(UserError(format!(
                    "{source} has lineage {}, the state has {}: it is another history of this stack; nothing was changed",
                    pushed.lineage, current.lineage
                ))
                .into());
            }
            if pushed.serial < current.serial {
                return Err(UserError(format!(
                    "{source} is at serial {}, older than the state's {}; nothing was changed",
                    pushed.serial, current.serial
                ))
                .into());
            }
        }
        opened.store.write(&mut pushed).await?;
        anyhow::Ok(())
    }
    .await;
    opened.store.release().await;
    result.map(|()| pushed)
}

/// `pwless state migrate`: moves the state of `stack` from `from` to `to`, both locked
/// throughout, and gives back the state moved. See [`copy_verify_switch`] for the order that
/// makes a migration stopped at any point safe to run again.
pub async fn migrate(
    from: &Location,
    to: &Location,
    stack: &str,
    events: &dyn Events,
) -> anyhow::Result<State> {
    if from.same_place(to) {
        return Err(UserError(format!(
            "the stack's `state:` section already points at {}: change it to the new place first, then migrate --from the old one",
            to.describe()
        ))
        .into());
    }
    let mut source = open_store(from, "state migrate", events).await?;
    let mut target = match open_store(to, "state migrate", events).await {
        Ok(target) => target,
        Err(error) => {
            source.release().await;
            return Err(error.into());
        }
    };
    let result = copy_verify_switch(&mut source, &mut target, stack, events).await;
    source.release().await;
    target.release().await;
    result
}

/// The same state, whatever pwless wrote it.
fn same_state(a: &State, b: &State) -> bool {
    let strip = |state: &State| State {
        pwless_version: String::new(),
        version: 0,
        ..state.clone()
    };
    strip(a) == strip(b)
}

/// Marks the old place moved (keeping the whole state in the marker), copies, verifies. In
/// that order, a migration stopped at any point leaves no two live copies: before the marker,
/// nothing changed; after it, every run at the old place is refused, and running the same
/// migration again takes the state from the marker and finishes.
async fn copy_verify_switch(
    source: &mut StateStore,
    target: &mut StateStore,
    stack: &str,
    events: &dyn Events,
) -> anyhow::Result<State> {
    let (from, to) = (source.location().clone(), target.location().clone());
    let Some(found) = source.read().await? else {
        return Err(UserError(format!(
            "no state in {}; nothing was changed",
            from.describe()
        ))
        .into());
    };
    if found.stack != stack {
        return Err(UserError(format!(
            "{} holds the state of stack `{}`, not `{stack}`; nothing was changed",
            from.describe(),
            found.stack
        ))
        .into());
    }
    let resuming = match &found.moved_to {
        None => false,
        Some(moved) if *moved == to.to_argument() => true,
        Some(moved) => {
            return Err(UserError(format!(
                "{} was already moved to {moved}; nothing was changed",
                from.describe()
            ))
            .into());
        }
    };
    let state = State {
        moved_to: None,
        ..found
    };
    let there = target.read().await?;
    match &there {
        None => {}
        // A marker this very history left when it moved away earlier: it may come back.
        Some(there) if there.moved_to.is_some() && there.lineage == state.lineage => {}
        Some(there) if resuming && there.lineage == state.lineage => {
            return Err(UserError(format!(
                "{} was already moved to {} (serial {} there now); nothing was changed",
                from.describe(),
                to.describe(),
                there.serial
            ))
            .into());
        }
        Some(there) => {
            return Err(UserError(format!(
                "{} already holds a state (lineage {}, serial {}); nothing was changed. Pull it and compare: if it is stale, remove it by hand first",
                to.describe(),
                there.lineage,
                there.serial
            ))
            .into());
        }
    }
    if resuming {
        events.emit(Event::Notice {
            message: format!(
                "Finishing an earlier migration: {} says it moved to {}.",
                from.describe(),
                to.describe()
            ),
        });
    } else {
        source
            .put_exact(&State {
                moved_to: Some(to.to_argument()),
                ..state.clone()
            })
            .await?;
    }
    target.put_exact(&state).await?;
    let copied = target.read().await?;
    if !copied
        .as_ref()
        .is_some_and(|copied| same_state(copied, &state))
    {
        return Err(UserError(format!(
            "the copy in {} does not read back the same; the state is kept in the marker at {}: run the same migration again",
            to.describe(),
            from.describe()
        ))
        .into());
    }
    Ok(state)
}
