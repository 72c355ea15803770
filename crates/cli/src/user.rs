//! `medmesh user`: accounts managed on the data directory directly, for the
//! first administrator or recovery. The server keeps the directory in
//! memory, so these run with the server stopped: each takes the data
//! directory's lock, and is refused, naming the server's process id, while a
//! server holds it. While it runs, use the API (`POST /api/v1/users`).

use clap::{Args, Subcommand};
use medmesh_access::{Access, Event, Outcome, Role};
use medmesh_model::PatientId;
use medmesh_storage::DataDirLock;
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user; prints a generated password unless --password-stdin is given.
    Add(AddArgs),
    /// List users and their roles.
    List {
        #[arg(long, default_value = "medmesh-data")]
        data_dir: PathBuf,
    },
    /// Disable a user (their API tokens are revoked).
    Disable {
        #[arg(long, default_value = "medmesh-data")]
        data_dir: PathBuf,
        username: String,
    },
}

#[derive(Args)]
pub struct AddArgs {
    #[arg(long, default_value = "medmesh-data")]
    data_dir: PathBuf,
    /// admin, physician, nurse, patient, caregiver, insurer, researcher or operations.
    #[arg(long)]
    role: Role,
    /// For --role patient: the patient id the account belongs to.
    #[arg(long)]
    patient: Option<String>,
    /// Where alarm notifications for this user are e-mailed.
    #[arg(long)]
    email: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    username: String,
}

/// The directory's lock (held until the command ends) and its accounts.
fn open(data_dir: &Path) -> anyhow::Result<(DataDirLock, Access)> {
    let lock = DataDirLock::acquire(data_dir)?;
    Ok((lock, Access::open(data_dir)?))
}

pub fn run(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add(a) => {
            let (_lock, access) = open(&a.data_dir)?;
            if let Some(e) = &a.email {
                medmesh_access::validate_email(e)?;
            }
            let patient = a
                .patient
                .map(PatientId::new)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
            let (password, generated) = if a.password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                (line.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (medmesh_access::secret::random_password(), true)
            };
            let user = access
                .directory
                .add_user(&a.username, a.role, patient, &password)?;
            if let Some(e) = &a.email {
                access.directory.set_email(&user.username, Some(e))?;
            }
            access.audit.record(Event {
                actor: "medmesh user add",
                role: None,
                action: &format!("add user {}", user.username),
                patient: None,
                outcome: Outcome::Allowed,
                detail: format!("role {}", user.role),
            });
            println!("added {} ({})", user.username, user.role);
            if generated {
                println!("password: {password}\n(shown once)");
            }
        }
        UserCommand::List { data_dir } => {
            let (_lock, access) = open(&data_dir)?;
            for u in access.directory.users() {
                println!(
                    "{:<24} {:<11} {}{}",
                    u.username,
                    u.role.as_str(),
                    u.patient
                        .map(|p| format!("patient {p} "))
                        .unwrap_or_default(),
                    if u.disabled { "disabled" } else { "" }
                );
            }
        }
        UserCommand::Disable { data_dir, username } => {
            let (_lock, access) = open(&data_dir)?;
            access.directory.disable_user(&username)?;
            println!("disabled {username}");
        }
    }
    Ok(())
}
