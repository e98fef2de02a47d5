//! `omsctl context`: list the contexts, pick one, show one's settings, create, change and delete
//! them in the config file (its comments kept).

use oms_ops::context::{self, list, read_file, set_current, Change};
use oms_ops::ctx::Ctx;
use oms_ops::render::table;
use oms_ops::Failure;

use super::confirm::Confirm;

/// `omsctl context`.
#[derive(Debug, clap::Subcommand)]
pub enum ContextCommand {
    /// Every context: name, target, brokers; `*` marks the one in use.
    List,
    /// Make NAME the context used when none is named (writes `current-context`).
    Use {
        /// A context name.
        name: String,
    },
    /// The settings of the context in use (or of NAME), secrets hidden.
    Show {
        /// A context name [default: the one in use].
        name: Option<String>,
    },
    /// Add a context to the config file, e.g. `context create shop target=compose
    /// brokers=127.0.0.1:29092`.
    Create {
        /// Its name (letters, digits, `-`, `_`).
        name: String,
        /// Its settings as KEY=VALUE: the keys of a `[contexts.NAME]` table (target, brokers,
        /// topic-prefix, token-command, namespace, ...; endpoints.SERVICE and kafka.PROPERTY).
        settings: Vec<String>,
    },
    /// Change settings of a context, e.g. `context set shop topic-prefix=staging.`.
    Set {
        /// A context name.
        name: String,
        /// KEY=VALUE, as for `create` (at least one).
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// Delete a context from the config file (not the one in use).
    Delete {
        /// A context name.
        name: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

/// The config file's path, which a change needs.
fn config_path(path: Option<std::path::PathBuf>) -> Result<std::path::PathBuf, Failure> {
    path.ok_or_else(|| Failure::usage("no config file path: set HOME, XDG_CONFIG_HOME or --config"))
}

/// Runs a context command. `ctx` is resolved for the context in use.
pub async fn run(ctx: &Ctx, command: ContextCommand) -> Result<(), Failure> {
    let path = ctx.config_path.clone();
    let file = read_file(path.as_deref(), false)?;
    match command {
        ContextCommand::List => {
            let rows = list(&file, &ctx.context.name)?;
            ctx.print(&rows, || {
                let mut t = table(&["", "NAME", "TARGET", "BROKERS"]);
                for r in &rows {
                    t.add_row([
                        if r.current { "*" } else { "" }.to_owned(),
                        r.name.clone(),
                        r.target.clone(),
                        r.brokers.clone().unwrap_or_else(|| "(default)".to_owned()),
                    ]);
                }
                t.to_string()
            })
        }
        ContextCommand::Create { name, settings } => {
            let path = config_path(path)?;
            context::set_keys(&path, &name, Change::Create, &settings)?;
            eprintln!("omsctl: context {name} created ({})", path.display());
            Ok(())
        }
        ContextCommand::Set { name, settings } => {
            let path = config_path(path)?;
            context::set_keys(&path, &name, Change::Set, &settings)?;
            eprintln!("omsctl: context {name} changed ({})", path.display());
            Ok(())
        }
        ContextCommand::Delete { name, confirm } => {
            let path = config_path(path)?;
            let what = format!("delete context {name} from {}", path.display());
            if !confirm.go_ahead(&what)? {
                eprintln!("omsctl: would {what} (dry run: nothing changed)");
                return Ok(());
            }
            context::delete(&path, &name)?;
            eprintln!("omsctl: context {name} deleted ({})", path.display());
            Ok(())
        }
        ContextCommand::Use { name } => {
            let path = config_path(path)?;
            set_current(&path, &name)?;
            eprintln!(
                "omsctl: context {name} is now the current context ({})",
                path.display()
            );
            Ok(())
        }
        ContextCommand::Show { name } => {
            let shown = match name {
                Some(n) if n != ctx.context.name => Ctx::new(oms_ops::ctx::Settings {
                    context: Some(n),
                    config: ctx.config_path.clone(),
                    ..Default::default()
                })?,
                _ => ctx.clone(),
            };
            let doc = shown.describe();
            ctx.print(&doc, || {
                let mut t = table(&["SETTING", "VALUE"]);
                // One row per field of the document, objects as key=value pairs.
                let fields = serde_json::to_value(&doc).unwrap_or_default();
                for (k, v) in fields.as_object().into_iter().flatten() {
                    let v = match v {
                        serde_json::Value::Object(m) if m.is_empty() => "-".to_owned(),
                        serde_json::Value::Object(m) => m
                            .iter()
                            .map(|(k, v)| format!("{k}={}", oms_ops::render::cell(v)))
                            .collect::<Vec<_>>()
                            .join(" "),
                        other => oms_ops::render::cell(other),
                    };
                    t.add_row([k.clone(), v]);
                }
                t.to_string()
            })
        }
    }
}
