//! Keys and typed commands, turned into [`Action`]s and omsctl command lines.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::*;

/// The action a key stands for in the current state.
pub fn key_action(app: &App, key: KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if app.command.is_some() {
        return match key.code {
            KeyCode::Enter => Some(Action::CommandDone),
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Backspace => Some(Action::CommandBackspace),
            KeyCode::Char(c) => Some(Action::CommandChar(c)),
            _ => None,
        };
    }
    if app.raw.is_some() {
        return match key.code {
            KeyCode::Char('y') => Some(Action::CopyRaw),
            KeyCode::Char('v') | KeyCode::Esc => Some(Action::ToggleRaw),
            KeyCode::Char('q') => Some(Action::Quit),
            _ => None,
        };
    }
    if app.confirm.is_some() {
        return match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => Some(Action::Confirm(true)),
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => Some(Action::Confirm(false)),
            _ => None,
        };
    }
    if app.editing {
        return match key.code {
            KeyCode::Enter => Some(Action::FilterDone),
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) => Some(Action::FilterChar(c)),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Esc => Action::Back,
        KeyCode::Tab => Action::NextTab,
        KeyCode::Char('1') => Action::Show(View::Overview),
        KeyCode::Char('2') => Action::Show(View::Sagas),
        KeyCode::Char('3') => Action::Show(View::Dlq),
        KeyCode::Char('4') => Action::Show(View::Logs),
        KeyCode::Char('5') => Action::Show(View::Lag),
        KeyCode::Char('g') | KeyCode::Home => Action::First,
        KeyCode::Char('G') | KeyCode::End => Action::Last,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Char(':') => Action::StartCommand(String::new()),
        KeyCode::Char('v') => Action::ToggleRaw,
        KeyCode::Char(']') => Action::NextLog,
        KeyCode::Char('c') => match app.selected_order() {
            Some(id) => Action::StartCommand(format!("saga cancel {id} ")),
            None => Action::StartCommand("saga cancel ".into()),
        },
        KeyCode::Char('t') => match app.selected_order() {
            Some(id) => Action::StartCommand(format!("saga retry {id}")),
            None => Action::StartCommand("saga retry ".into()),
        },
        KeyCode::Char('f') => Action::ToggleFreeze,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('s') => Action::CycleState,
        KeyCode::Char('o') => Action::CycleSort,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Enter => Action::Open,
        KeyCode::Char('r') => Action::AskReplay,
        _ => return None,
    })
}

/// The omsctl arguments of a `:` command, checked by omsctl's own parser. `replay [ENTRY]`
/// (the selected dead letter by default), `saga retry [ID]`, `saga cancel [ID] REASON…` (the
/// selected saga by default), `chaos …` (a trailing duration is `--for`), `dlq …`.
pub fn command_args(line: &str, app: &App) -> Result<Vec<String>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let is_id = |w: &&str| uuid::Uuid::parse_str(w).is_ok();
    let args: Vec<String> = match words.as_slice() {
        [] => return Err("empty command".into()),
        ["replay"] => match app.selected_dlq_entry() {
            Some(entry) => vec!["dlq".into(), "replay".into(), entry, "--yes".into()],
            None => return Err(":replay needs an entry, or a selected dead letter".into()),
        },
        ["replay", entry] => vec![
            "dlq".into(),
            "replay".into(),
            (*entry).into(),
            "--yes".into(),
        ],
        ["saga", "retry"] => match app.selected_order() {
            Some(id) => vec!["saga".into(), "retry".into(), id],
            None => return Err(":saga retry needs an order id, or a selected saga".into()),
        },
        ["saga", "cancel", rest @ ..] => {
            let (id, reason) = match rest {
                [first, reason @ ..] if is_id(first) => ((*first).to_owned(), reason.join(" ")),
                reason => match app.selected_order() {
                    Some(id) => (id, reason.join(" ")),
                    None => return Err(":saga cancel needs an order id, or a selected saga".into()),
                },
            };
            if reason.trim().is_empty() {
                return Err(":saga cancel needs a reason: saga cancel [ID] REASON".into());
            }
            vec![
                "saga".into(),
                "cancel".into(),
                id,
                "--reason".into(),
                reason,
            ]
        }
        ["chaos", rest @ ..] => {
            let mut args: Vec<String> = std::iter::once("chaos")
                .chain(rest.iter().copied())
                .map(str::to_owned)
                .collect();
            let last_is_duration = rest
                .last()
                .is_some_and(|w| humantime::parse_duration(w).is_ok());
            if last_is_duration && !rest.contains(&"--for") {
                let d = args.pop().unwrap_or_default();
                args.extend(["--for".to_owned(), d]);
            }
            args
        }
        [first, ..] if matches!(*first, "saga" | "dlq") => {
            words.iter().map(|w| (*w).to_owned()).collect()
        }
        [first, ..] => {
            return Err(format!(
                "unknown command {first:?} (replay, saga retry, saga cancel, chaos …, dlq …)"
            ))
        }
    };
    let mut args = args;
    // The dashboard asks before it runs a command that confirms (its own prompt stands for it).
    let confirms = args
        .get(1)
        .is_some_and(|verb| crate::cmd::confirm::CONFIRMED_VERBS.contains(&verb.as_str()));
    let told = args
        .iter()
        .any(|a| matches!(a.as_str(), "--yes" | "-y" | "--execute" | "--dry-run"));
    if confirms && !told {
        args.push("--yes".into());
    }
    crate::check_command(&args)?;
    Ok(args)
}
