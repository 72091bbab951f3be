//! What the user typed: the commands and flags, validated by clap, no I/O.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "Exit codes: 0 ok, 1 run failed, 2 usage or validation, 3 auth, 4 not found, 5 server unreachable.

Examples:
  xenectl login --server https://xene.example.com
  xenectl apply -f ci.yaml
  xenectl run ci/build -p branch=main --wait
  xenectl logs 42 -f
  xenectl get runs -w";

/// The command-line client for a Xene server: apply workflows, start runs,
/// follow logs, manage agents and tokens.
#[derive(Debug, Parser)]
#[command(name = "xenectl", version, about, after_help = EXIT_CODES, arg_required_else_help = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The server to talk to (wins over the context's).
    #[arg(long, global = true, env = "XENE_SERVER")]
    pub server: Option<String>,
    /// The context of the config file to use (instead of the current one).
    #[arg(long, global = true, env = "XENE_CONTEXT")]
    pub context: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    /// A wider table (`get runs`: AGENTS lists every agent of each run, not
    /// the first and how many more).
    Wide,
    Json,
    Yaml,
}

impl Format {
    /// A table for people (`table` or `wide`), not JSON or YAML.
    pub fn is_table(self) -> bool {
        matches!(self, Format::Table | Format::Wide)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in: opens the browser at the server's sign-in and receives an API
    /// token on a loopback address (or reads one from stdin with --token).
    #[command(after_help = "Examples:
  xenectl login --server https://xene.example.com --context prod
  echo \"$TOKEN\" | xenectl login --server https://xene.example.com --token")]
    Login(Login),
    /// Revoke the context's token on the server and forget it.
    #[command(after_help = "Examples:
  xenectl logout
  xenectl logout --context prod")]
    Logout,
    /// Contexts: the servers xenectl knows and their tokens.
    #[command(
        subcommand,
        after_help = "Examples:\n  xenectl config get-contexts\n  xenectl config use-context prod"
    )]
    Config(ConfigCommand),
    /// Check a workflow file offline: every fault with its path and line.
    #[command(after_help = "Examples:
  xenectl validate ci.yaml")]
    Validate {
        /// The workflow file (YAML or JSON); `-` reads stdin.
        file: PathBuf,
    },
    /// Apply workflows, showing what changes against the current version.
    #[command(after_help = "Examples:
  xenectl apply -f ci.yaml
  xenectl apply -f workflows/ --dry-run
  cat ci.yaml | xenectl apply -f -
  xenectl apply -f deploy.yaml --approve")]
    Apply {
        /// A file, a directory (its .yaml, .yml and .json files) or `-` for stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        file: PathBuf,
        /// Validate and show the diff, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also approve what is applied for the protected secrets it uses
        /// (admins; read the diff first: whatever it runs sees their
        /// values). Without it a version is stored unapproved, whoever
        /// applies it, and its runs are refused those secrets.
        #[arg(long)]
        approve: bool,
        /// With --approve: approve even though whoever starts a run chooses
        /// what runs with the protected secrets (an image or env taken
        /// from a template), which is refused otherwise.
        #[arg(long, requires = "approve")]
        accept_run_time_choices: bool,
    },
    /// List objects.
    #[command(after_help = "Examples:
  xenectl get workflows
  xenectl get runs --workflow ci --status error
  xenectl get runs -w
  xenectl get agents -o json")]
    Get(Get),
    /// Show one object in detail.
    #[command(after_help = "Examples:
  xenectl describe workflow ci
  xenectl describe run 42
  xenectl describe agent builtin@host")]
    Describe {
        #[command(subcommand)]
        what: Describe,
    },
    /// Delete an object.
    #[command(after_help = "Examples:
  xenectl delete workflow ci")]
    Delete {
        #[command(subcommand)]
        what: Delete,
    },
    /// Start a pipeline; with --wait, follow it to the end.
    #[command(after_help = "Examples:
  xenectl run ci/build
  xenectl run ci/build -p branch=main -p sha=abc123 --wait")]
    Run {
        /// WORKFLOW/PIPELINE
        target: String,
        /// A parameter, as key=value (repeatable).
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Follow the run and exit with its outcome (0 success, 1 otherwise).
        #[arg(long)]
        wait: bool,
    },
    /// Cancel a run.
    #[command(after_help = "Examples:
  xenectl cancel 42")]
    Cancel { run: i64 },
    /// Approve a workflow version for the protected secrets it uses
    /// (admins). Read it first: whatever it runs sees their values.
    #[command(after_help = "Examples:
  xenectl describe workflow deploy
  xenectl approve deploy --version 7
  xenectl approve deploy --version 7 --revoke")]
    Approve {
        workflow: String,
        /// The version to approve (`xenectl describe workflow` shows the current one).
        #[arg(long)]
        version: i64,
        /// Approve even though whoever starts a run chooses what runs with
        /// the protected secrets (an image or env taken from a template):
        /// refused otherwise, naming each place.
        #[arg(long, conflicts_with = "revoke")]
        accept_run_time_choices: bool,
        /// Withdraw the version's approval: its runs are refused the
        /// protected secrets again.
        #[arg(long)]
        revoke: bool,
    },
    /// Start a run's pipeline again with the same parameters, on the same
    /// workflow version as the run (with --latest, on the current one).
    #[command(after_help = "Examples:
  xenectl rerun 42 --wait
  xenectl rerun 42 --latest")]
    Rerun {
        run: i64,
        /// Run the workflow's current version instead of the run's.
        #[arg(long)]
        latest: bool,
        /// Follow the new run and exit with its outcome.
        #[arg(long)]
        wait: bool,
    },
    /// Print a run's logs; with -f, follow them until the run ends.
    #[command(after_help = "Examples:
  xenectl logs 42
  xenectl logs 42 -f --task test
  xenectl logs 42 --task build --step compile --timestamps
  xenectl logs 42 --since 10m")]
    Logs {
        run: i64,
        /// Follow the live feed until the run ends (reconnects by itself).
        #[arg(short, long)]
        follow: bool,
        /// Only this task's lines.
        #[arg(long)]
        task: Option<String>,
        /// Only this step's lines (with --task).
        #[arg(long, requires = "task")]
        step: Option<String>,
        /// Prefix each line with when it was written (UTC).
        #[arg(long)]
        timestamps: bool,
        /// Only lines written in this last while, like 10m or 2h.
        #[arg(long, value_parser = parse_duration)]
        since: Option<std::time::Duration>,
    },
    /// Agents: join tokens, revocation and draining.
    #[command(
        subcommand,
        after_help = "Examples:\n  xenectl agents join-token --label pool=linux\n  xenectl agents revoke build-01\n  xenectl agents drain build-01"
    )]
    Agents(AgentsCommand),
    /// API tokens: create, list, revoke.
    #[command(
        subcommand,
        after_help = "Examples:\n  xenectl tokens create ci --role editor\n  xenectl tokens revoke 0b5c..."
    )]
    Tokens(TokensCommand),
    /// Secrets for tasks: set (value from stdin or a file), remove, rotate the key.
    #[command(
        subcommand,
        after_help = "Examples:\n  xenectl secrets set DEPLOY_TOKEN < token.txt\n  xenectl secrets set DEPLOY_TOKEN --workflow site --from-file token.txt\n  xenectl secrets rm DEPLOY_TOKEN --workflow site\n  xenectl get secrets"
    )]
    Secrets(SecretsCommand),
    /// Webhooks of webhook pipelines: URL, secret rotation, deliveries.
    #[command(
        subcommand,
        after_help = "Examples:\n  xenectl hooks rotate ci/push > secret\n  xenectl hooks deliveries ci/push"
    )]
    Hooks(HooksCommand),
    /// Artifacts: the files a run's tasks published, listed or downloaded.
    #[command(
        subcommand,
        after_help = "Examples:\n  xenectl artifacts ls 42\n  xenectl artifacts get 42 binary --dest out/\n  xenectl artifacts get 42 reports --path junit.xml"
    )]
    Artifacts(ArtifactsCommand),
    /// Runs: pin one so retention keeps its artifacts, or unpin it.
    #[command(
        subcommand,
        after_help = "Examples:\n  xenectl runs pin 42\n  xenectl runs unpin 42"
    )]
    Runs(RunsCommand),
    /// Caches: a workflow's saved entries, listed or removed.
    #[command(
        subcommand,
        after_help = "Examples:\n  xenectl caches ls site\n  xenectl caches rm site 12"
    )]
    Caches(CachesCommand),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  xenectl completion bash > /etc/bash_completion.d/xenectl
  xenectl completion zsh > \"${fpath[1]}/_xenectl\"
  xenectl completion fish > ~/.config/fish/completions/xenectl.fish")]
    Completion { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct Login {
    /// Read an API token from stdin instead of signing in with a browser
    /// (a token never goes on the command line, where others can read it).
    #[arg(long)]
    pub token: bool,
    /// Do not try to open a browser; only print the address.
    #[arg(long)]
    pub no_browser: bool,
    /// Save the server and token under this context name (default: the
    /// current context, else one named after the server's host).
    #[arg(long = "name")]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Make a context the current one.
    #[command(after_help = "Examples:
  xenectl config use-context prod")]
    UseContext { name: String },
    /// List the contexts; the current one is marked with *.
    #[command(after_help = "Examples:
  xenectl config get-contexts")]
    GetContexts,
    /// Create or change a context: its server comes from --server, its token from
    /// `xenectl login`.
    #[command(after_help = "Examples:
  xenectl config set-context prod --server https://xene.example.com")]
    SetContext { name: String },
    /// Remove a context (and its token) from the config file.
    #[command(after_help = "Examples:
  xenectl config delete-context old")]
    DeleteContext { name: String },
    /// Print the current context's name.
    #[command(after_help = "Examples:
  xenectl config current-context")]
    CurrentContext,
}

#[derive(Debug, Args)]
pub struct Get {
    #[command(subcommand)]
    pub what: GetWhat,
}

#[derive(Debug, Subcommand)]
pub enum GetWhat {
    /// Workflows with their current version.
    #[command(
        visible_alias = "workflow",
        after_help = "Examples:\n  xenectl get workflows\n  xenectl get workflows -o yaml"
    )]
    Workflows,
    /// Pipelines of every workflow with their trigger and scheduling state.
    #[command(
        visible_alias = "pipeline",
        after_help = "Examples:\n  xenectl get pipelines"
    )]
    Pipelines,
    /// Runs, newest first.
    #[command(
        visible_alias = "run",
        after_help = "Examples:\n  xenectl get runs --workflow ci --status error --limit 5\n  xenectl get runs -w\n  xenectl get runs -o wide"
    )]
    Runs {
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Keep watching: a line per change (from the runs feed).
        #[arg(short, long)]
        watch: bool,
    },
    /// Agents with their state and load.
    #[command(
        visible_alias = "agent",
        after_help = "Examples:\n  xenectl get agents\n  xenectl get agents -w"
    )]
    Agents {
        /// Keep watching: a line per change.
        #[arg(short, long)]
        watch: bool,
    },
    /// Your API tokens (an admin sees everyone's).
    #[command(
        visible_alias = "token",
        after_help = "Examples:\n  xenectl get tokens -o json"
    )]
    Tokens,
    /// Webhook pipelines with their hooks' URLs (never their secrets).
    #[command(
        visible_alias = "hook",
        after_help = "Examples:\n  xenectl get hooks\n  xenectl get hooks -o json"
    )]
    Hooks,
    /// Secrets' names and scopes (never their values).
    #[command(
        visible_alias = "secret",
        after_help = "Examples:\n  xenectl get secrets\n  xenectl get secrets --workflow site"
    )]
    Secrets {
        /// Only those a run of this workflow sees (its own and the global ones).
        #[arg(long)]
        workflow: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Describe {
    /// A workflow's current version, its pipelines and recent runs.
    #[command(after_help = "Examples:\n  xenectl describe workflow ci")]
    Workflow { name: String },
    /// A run with its tasks and steps, statuses, durations and exit codes.
    #[command(
        after_help = "Examples:\n  xenectl describe run 42\n  xenectl describe run 42 -o json"
    )]
    Run { id: i64 },
    /// An agent's state, load, runtimes and labels.
    #[command(after_help = "Examples:\n  xenectl describe agent builtin@host")]
    Agent { id: String },
    /// A pipeline: its trigger, next fires, params with their types, tasks
    /// and what they depend on, and its hook's URL.
    #[command(after_help = "Examples:\n  xenectl describe pipeline ci/build")]
    Pipeline {
        /// WORKFLOW/PIPELINE
        target: String,
    },
    /// A secret's scope and who changed it when (never its value).
    #[command(
        after_help = "Examples:\n  xenectl describe secret DEPLOY_TOKEN\n  xenectl describe secret DEPLOY_TOKEN --workflow site"
    )]
    Secret {
        name: String,
        /// The workflow's own secret, not the global one.
        #[arg(long)]
        workflow: Option<String>,
    },
    /// An API token's name, role, expiry and last use (never the token).
    #[command(after_help = "Examples:\n  xenectl describe token 0b5c...")]
    Token { id: String },
    /// A webhook pipeline's hook: its URL and when its secret was made (as
    /// `hooks show`; never the secret).
    #[command(after_help = "Examples:\n  xenectl describe hook ci/push")]
    Hook {
        /// WORKFLOW/PIPELINE
        target: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Delete {
    /// Delete a workflow (its runs keep their history).
    #[command(after_help = "Examples:\n  xenectl delete workflow ci")]
    Workflow { name: String },
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Make a one-time join token and print the command that installs an agent with it.
    #[command(after_help = "Examples:
  xenectl agents join-token --label gpu=true --label zone=eu
  xenectl agents join-token --label pool=a --capacity 2")]
    JoinToken {
        /// A label of the agent joining with it, as key=value (repeatable).
        /// Given, these are its labels: those it declares are ignored.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Most task attempts the agent joining with it holds at once (1 to 256),
        /// whatever it declares.
        #[arg(long, value_name = "N")]
        capacity: Option<u32>,
        /// How long it works, like 30m or 24h (default 1h).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Revoke an agent: its credential stops working at once.
    #[command(after_help = "Examples:
  xenectl agents revoke build-01")]
    Revoke { id: String },
    /// Drain an agent: it takes no new tasks and finishes those it holds;
    /// with --undo, it takes tasks again.
    #[command(after_help = "Examples:
  xenectl agents drain build-01
  xenectl agents drain build-01 --undo")]
    Drain {
        /// The agent's id, or its name when no other agent has it.
        agent: String,
        /// Take the agent back into service.
        #[arg(long)]
        undo: bool,
    },
    /// List agents (as `get agents`).
    #[command(after_help = "Examples:\n  xenectl agents list")]
    List,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// List a run's artifacts: task, name, files, size (and a one-file
    /// artifact's digest; -o wide shows it whole).
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  xenectl artifacts ls 42 -o json"
    )]
    Ls { run: i64 },
    /// Download an artifact's files under a directory, each checked against
    /// its digest; paths never lead out of it and links are refused.
    #[command(after_help = "Examples:
  xenectl artifacts get 42 binary
  xenectl artifacts get 42 site --dest public/
  xenectl artifacts get 42 reports --path junit/unit.xml")]
    Get {
        run: i64,
        name: String,
        /// The directory the files go under (made if missing).
        #[arg(long, default_value = ".")]
        dest: PathBuf,
        /// Only this file of the artifact (its path in it).
        #[arg(long)]
        path: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Pin a run: its artifacts are kept whatever the retention (editors).
    #[command(after_help = "Examples:\n  xenectl runs pin 42")]
    Pin { run: i64 },
    /// Unpin a run: retention applies to its artifacts again.
    #[command(after_help = "Examples:\n  xenectl runs unpin 42")]
    Unpin { run: i64 },
}

#[derive(Debug, Subcommand)]
pub enum CachesCommand {
    /// List a workflow's saved cache entries, the most recently used first
    /// (at most 200): id, name, key, files, size, last used, saved; its
    /// usage and quota go to stderr.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  xenectl caches ls site\n  xenectl caches ls site -o json"
    )]
    Ls { workflow: String },
    /// Remove one of a workflow's cache entries, by the id `caches ls`
    /// shows (editors): the next restore of its key misses.
    #[command(after_help = "Examples:\n  xenectl caches rm site 12")]
    Rm { workflow: String, id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Show a pipeline's webhook URL (never its secret).
    #[command(after_help = "Examples:
  xenectl hooks show ci/push")]
    Show {
        /// WORKFLOW/PIPELINE
        target: String,
    },
    /// Give a webhook pipeline its hook, or its hook a new secret (the URL
    /// stays); only the secret goes to stdout, shown once.
    #[command(after_help = "Examples:
  xenectl hooks rotate ci/push > push-secret")]
    Rotate {
        /// WORKFLOW/PIPELINE
        target: String,
    },
    /// List a hook's recent deliveries with their answers and reasons.
    #[command(after_help = "Examples:
  xenectl hooks deliveries ci/push -o json")]
    Deliveries {
        /// WORKFLOW/PIPELINE
        target: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an API token; only the token goes to stdout, shown once.
    #[command(after_help = "Examples:
  xenectl tokens create ci --role editor --expires-in 30d > ci-token")]
    Create {
        name: String,
        /// At most your own role (default: your role).
        #[arg(long)]
        role: Option<String>,
        /// How long it works, like 30d (default 90d).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List your tokens.
    #[command(after_help = "Examples:
  xenectl tokens list")]
    List,
    /// Revoke a token by id.
    #[command(after_help = "Examples:
  xenectl tokens revoke 0b5c...")]
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create or replace a secret. The value comes from stdin (a trailing
    /// newline is dropped) or a file, never from the command line, where
    /// other users could read it in the process list.
    #[command(after_help = "Examples:
  xenectl secrets set DEPLOY_TOKEN < token.txt
  printf %s \"$TOKEN\" | xenectl secrets set DEPLOY_TOKEN --workflow site
  xenectl secrets set TLS_KEY --from-file key.pem
  xenectl secrets set PROD_KEY --protected --allow deploy/prod < key.txt
  xenectl secrets set PROD_KEY --keep-value --allow deploy/prod --allow release")]
    Set {
        name: String,
        /// Only for this workflow's runs (it wins over a global one).
        #[arg(long)]
        workflow: Option<String>,
        /// Read the value from this file, as it is.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// Protected: only workflow versions an admin approved may use it
        /// (`xenectl approve`), in the workflows --allow names.
        #[arg(long, conflicts_with = "unprotected")]
        protected: bool,
        /// No longer protected: every editor's workflow may use it again.
        #[arg(long)]
        unprotected: bool,
        /// A workflow, or WORKFLOW/PIPELINE, that may use the protected
        /// secret (repeatable; replaces the list).
        #[arg(
            long,
            value_name = "WORKFLOW[/PIPELINE]",
            conflicts_with = "unprotected"
        )]
        allow: Vec<String>,
        /// Change only the protection, keeping the stored value.
        #[arg(long, conflicts_with = "from_file")]
        keep_value: bool,
    },
    /// Delete a secret.
    #[command(
        visible_alias = "delete",
        after_help = "Examples:
  xenectl secrets rm DEPLOY_TOKEN
  xenectl secrets rm DEPLOY_TOKEN --workflow site"
    )]
    Rm {
        name: String,
        /// The workflow's own secret, not the global one.
        #[arg(long)]
        workflow: Option<String>,
    },
    /// List secrets (as `get secrets`).
    #[command(after_help = "Examples:\n  xenectl secrets list")]
    List {
        #[arg(long)]
        workflow: Option<String>,
    },
    /// Re-encrypt every secret under the first key of the server's key
    /// file (after adding a new key first in every replica's file).
    #[command(after_help = "Examples:\n  xenectl secrets rotate-key")]
    RotateKey,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    xene_core::duration::parse(text).map_err(|e| e.to_string())
}
