//! `medmesh user`: accounts managed on the data directory directly, for the
//! first administrator or recovery. The server keeps the directory in
//! memory, so run these with the server stopped; while it runs, use the API
//! (`POST /api/v1/users`), which also records the change in the audit log.

use clap::{Args, Subcommand};
use medmesh_access::{Access, Event, Outcome, Role};
use medmesh_model::PatientId;
use std::io::BufRead;
use std::path::PathBuf;

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

pub fn run(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add(a) => {
            let access = Access::open(&a.data_dir)?;
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
            let access = Access::open(&data_dir)?;
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
            let access = Access::open(&data_dir)?;
            access.directory.disable_user(&username)?;
            println!("disabled {username}");
        }
    }
    Ok(())
}
