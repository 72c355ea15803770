//! The `[alarms]` table: escalation chains, quiet hours and the delivery
//! channels (webhook, e-mail). Every part is off until configured.
//!
//! ```toml
//! [alarms]
//! time_zone = "Europe/London"  # the site's wall clock in e-mails (default UTC)
//! dashboard_url = "https://medmesh.example.org"  # e-mails link to the alarm there
//! [alarms.escalation]          # per priority: high, medium, low
//! high = [
//!   { roles = ["nurse"] },                       # level 0, at once
//!   { after = "2m", users = ["charge.kim"] },    # level 1: the charge nurse
//!   { after = "5m", roles = ["physician"] },     # level 2
//! ]
//! [alarms.quiet_hours]         # low priority only; e-mail and webhooks
//! start = "22:00"
//! end = "07:00"
//! time_zone = "Europe/London"  # or a fixed utc_offset = "+01:00"; default alarms.time_zone
//! [alarms.webhook]
//! urls = ["https://pager.example.org/medmesh"]
//! secret = "a shared secret of 16 or more characters"
//! [alarms.email]
//! smtp_url = "smtp://127.0.0.1:25"
//! from = "medmesh <alarms@example.org>"
//! ```

use medmesh_access::Role;
use medmesh_model::Priority;
use medmesh_rules::escalation::{self, Policy, Step};
use medmesh_sinks::email::EmailSettings;
use medmesh_sinks::quiet_hours::QuietHours;
use medmesh_sinks::retry::Retry;
use medmesh_sinks::webhook::WebhookSettings;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmsConfig {
    /// IANA time zone of the site ("Europe/London"): times in e-mails are
    /// its wall clock, with the offset; quiet hours use it unless they name
    /// their own. UTC when not given.
    pub time_zone: Option<String>,
    /// The dashboard's address as its users reach it
    /// ("https://medmesh.example.org"): e-mails link to the alarm there.
    /// Without it they name the alarm without a link.
    pub dashboard_url: Option<String>,
    pub escalation: EscalationConfig,
    pub quiet_hours: Option<QuietHoursConfig>,
    pub webhook: WebhookConfig,
    pub email: EmailConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationConfig {
    pub high: Vec<StepConfig>,
    pub medium: Vec<StepConfig>,
    pub low: Vec<StepConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepConfig {
    /// Delay from the raise ("2m"); level 0 leaves it out.
    pub after: Option<String>,
    /// Roles of the patient's care team members told at this level.
    pub roles: Vec<String>,
    /// Users told at this level whatever their team (the charge nurse).
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursConfig {
    pub start: String,
    pub end: String,
    /// IANA time zone of `start` and `end` ("Europe/London"): follows
    /// daylight-saving changes. Not with `utc_offset`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Fixed offset ("+01:00"); neither given means `alarms.time_zone`
    /// (UTC if that is not given either).
    #[serde(default)]
    pub utc_offset: Option<String>,
}

impl QuietHoursConfig {
    fn build(&self, site_zone: Option<&str>) -> Result<QuietHours, String> {
        let (start, end) = (&self.start, &self.end);
        match (self.time_zone.as_deref(), self.utc_offset.as_deref()) {
            (Some(_), Some(_)) => Err(
                "give time_zone or utc_offset, not both (a named zone already knows its offset)"
                    .into(),
            ),
            (Some(zone), None) => QuietHours::parse_in_time_zone(start, end, zone),
            (None, Some(offset)) => QuietHours::parse(start, end, offset),
            // Neither: the site's zone, else UTC.
            (None, None) => match site_zone {
                Some(zone) => QuietHours::parse_in_time_zone(start, end, zone),
                None => QuietHours::parse(start, end, "UTC"),
            },
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    pub urls: Vec<String>,
    pub secret: Option<String>,
    /// Attempts per notification, the first included (default 6).
    pub attempts: Option<u32>,
    /// Wait after the first failure, doubled each time (default "2s").
    pub first_retry: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_url: Option<String>,
    pub from: Option<String>,
    pub attempts: Option<u32>,
    pub first_retry: Option<String>,
}

/// What the server starts from the `[alarms]` table.
pub struct AlarmDelivery {
    pub policy: Policy,
    pub webhook: Option<WebhookSettings>,
    pub email: Option<EmailSettings>,
}

/// Shortest webhook secret: a short one could be guessed from signatures.
const MIN_SECRET_CHARS: usize = 16;
/// Longest wait for a webhook receiver's or SMTP server's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn duration(key: &str, raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw)
        .map_err(|e| format!("{key} = {raw:?}: {e}; e.g. \"90s\" or \"2m\""))
}

fn retry(table: &str, attempts: Option<u32>, first: &Option<String>) -> Result<Retry, String> {
    let mut r = Retry::default();
    if let Some(n) = attempts {
        if !(1..=20).contains(&n) {
            return Err(format!("alarms.{table}.attempts = {n}: use 1 to 20"));
        }
        r.attempts = n;
    }
    if let Some(raw) = first {
        r.first_delay = duration(&format!("alarms.{table}.first_retry"), raw)?;
    }
    Ok(r)
}

impl AlarmsConfig {
    /// Checks every key and builds what the server runs; errors name the key.
    pub fn build(&self) -> Result<AlarmDelivery, String> {
        let mut policy = Policy::default();
        for (name, priority, steps) in [
            ("high", Priority::High, &self.escalation.high),
            ("medium", Priority::Medium, &self.escalation.medium),
            ("low", Priority::Low, &self.escalation.low),
        ] {
            let key = format!("alarms.escalation.{name}");
            let mut ladder = Vec::new();
            for (i, s) in steps.iter().enumerate() {
                for role in &s.roles {
                    role.parse::<Role>()
                        .map_err(|e| format!("{key}[{i}].roles: {e}"))?;
                }
                for user in &s.users {
                    medmesh_access::validate_username(user)
                        .map_err(|e| format!("{key}[{i}].users: {e}"))?;
                }
                let after_ms = match &s.after {
                    Some(raw) => duration(&format!("{key}[{i}].after"), raw)?.as_millis() as i64,
                    None => 0,
                };
                ladder.push(Step {
                    after_ms,
                    roles: s.roles.clone(),
                    users: s.users.clone(),
                });
            }
            escalation::check_ladder(&ladder).map_err(|e| format!("{key}: {e}"))?;
            if !ladder.is_empty() {
                policy.ladders.insert(priority, ladder);
            }
        }
        let time_zone = self
            .time_zone
            .as_deref()
            .map(medmesh_sinks::quiet_hours::time_zone_named)
            .transpose()
            .map_err(|e| format!("alarms.{e}"))?;
        let dashboard_url = self
            .dashboard_url
            .as_ref()
            .map(|raw| {
                medmesh_sinks::webhook::Url::parse(raw)
                    .ok()
                    .filter(|u| {
                        matches!(u.scheme(), "http" | "https")
                            && u.query().is_none()
                            && u.fragment().is_none()
                    })
                    .map(|_| raw.trim_end_matches('/').to_string())
                    .ok_or_else(|| {
                        format!("alarms.dashboard_url {raw:?}: expected the dashboard's http(s) address, e.g. \"https://medmesh.example.org\"")
                    })
            })
            .transpose()?;
        let quiet_hours = self
            .quiet_hours
            .as_ref()
            .map(|q| q.build(self.time_zone.as_deref()))
            .transpose()
            .map_err(|e| format!("alarms.quiet_hours: {e}"))?;

        let w = &self.webhook;
        let webhook = if w.urls.is_empty() {
            None
        } else {
            let urls = w
                .urls
                .iter()
                .map(|u| {
                    medmesh_sinks::webhook::Url::parse(u)
                        .ok()
                        .filter(|p| matches!(p.scheme(), "http" | "https"))
                        .ok_or_else(|| format!("alarms.webhook.urls: {u:?} is not an http(s) URL"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let secret = w
                .secret
                .clone()
                .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
                .ok_or_else(|| {
                    format!("alarms.webhook.secret: webhooks are signed; give a shared secret of at least {MIN_SECRET_CHARS} characters")
                })?;
            Some(WebhookSettings {
                urls,
                secret,
                retry: retry("webhook", w.attempts, &w.first_retry)?,
                quiet_hours: quiet_hours.clone(),
                timeout: ANSWER_TIMEOUT,
            })
        };

        let e = &self.email;
        let email = match (&e.smtp_url, &e.from) {
            (None, None) => None,
            (Some(url), Some(from)) => {
                let mut s = EmailSettings::new(url, from, ANSWER_TIMEOUT, policy.clone())?;
                s.retry = retry("email", e.attempts, &e.first_retry)?;
                s.quiet_hours = quiet_hours;
                if let Some(zone) = time_zone {
                    s.time_zone = zone;
                }
                s.dashboard_url = dashboard_url;
                Some(s)
            }
            (Some(_), None) => {
                return Err("alarms.email.from: the sender address is needed with smtp_url".into());
            }
            (None, Some(_)) => {
                return Err("alarms.email.smtp_url: the SMTP server is needed with from".into());
            }
        };
        Ok(AlarmDelivery {
            policy,
            webhook,
            email,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn build(toml: &str) -> Result<super::AlarmDelivery, String> {
        Config::from_toml(toml)?.alarms.build()
    }

    #[test]
    fn nothing_is_delivered_or_escalated_unless_configured() {
        let d = build("").unwrap();
        assert!(d.policy.ladders.is_empty() && d.webhook.is_none() && d.email.is_none());
    }

    #[test]
    fn a_full_table_builds() {
        let d = build(
            r#"
[alarms.escalation]
high = [{ roles = ["nurse"] }, { after = "2m", users = ["charge.kim"] }, { after = "5m", roles = ["physician"] }]
[alarms.quiet_hours]
start = "22:00"
end = "07:00"
utc_offset = "+01:00"
[alarms.webhook]
urls = ["http://127.0.0.1:9/hook"]
secret = "0123456789abcdef"
attempts = 3
first_retry = "500ms"
[alarms.email]
smtp_url = "smtp://127.0.0.1:2525"
from = "medmesh <alarms@example.org>"
"#,
        )
        .unwrap();
        let high = &d.policy.ladders[&medmesh_model::Priority::High];
        assert_eq!(
            high.iter().map(|s| s.after_ms).collect::<Vec<_>>(),
            [0, 120_000, 300_000]
        );
        let w = d.webhook.unwrap();
        assert_eq!(w.retry.attempts, 3);
        assert!(w.quiet_hours.is_some());
        assert!(d.email.is_some());
    }

    #[test]
    fn bad_keys_are_named() {
        let err = |t: &str| build(t).err().unwrap_or_else(|| panic!("accepted: {t}"));
        assert!(
            err("[alarms.escalation]\nhigh = [{ roles = [\"surgeon\"] }]")
                .contains("alarms.escalation.high[0].roles")
        );
        assert!(
            err("[alarms.escalation]\nlow = [{ after = \"1m\", roles = [\"nurse\"] }]")
                .contains("level 0")
        );
        assert!(err("[alarms.escalation]\nmedium = [{ roles = [\"nurse\"] }, { after = \"soon\", roles = [\"physician\"] }]").contains("medium[1].after"));
        assert!(
            err("[alarms.webhook]\nurls = [\"ftp://x\"]\nsecret = \"0123456789abcdef\"")
                .contains("alarms.webhook.urls")
        );
        assert!(
            err("[alarms.webhook]\nurls = [\"http://x\"]\nsecret = \"short\"")
                .contains("alarms.webhook.secret")
        );
        assert!(
            err("[alarms.email]\nsmtp_url = \"smtp://127.0.0.1\"").contains("alarms.email.from")
        );
        assert!(
            err("[alarms.email]\nsmtp_url = \"gopher://x\"\nfrom = \"a@b.org\"")
                .contains("alarms.email.smtp_url")
        );
        assert!(
            err("[alarms.email]\nsmtp_url = \"smtp://x\"\nfrom = \"not an address\"")
                .contains("alarms.email.from")
        );
        assert!(
            err("[alarms.quiet_hours]\nstart = \"22\"\nend = \"07:00\"")
                .contains("alarms.quiet_hours")
        );
        assert!(err("[alarms]\nescalate = true").contains("escalate"));
    }

    #[test]
    fn quiet_hours_take_a_named_time_zone_or_an_offset_but_not_both() {
        let quiet = |keys: &str| {
            build(&format!(
                "[alarms.quiet_hours]\nstart = \"22:00\"\nend = \"07:00\"\n{keys}\n\
                 [alarms.webhook]\nurls = [\"http://127.0.0.1:9/\"]\nsecret = \"0123456789abcdef\""
            ))
            .map(|d| d.webhook.unwrap().quiet_hours.unwrap())
        };
        // 2026-07-01T21:30Z is 22:30 in London (BST): held until 06:00Z.
        let july_evening = 1_782_941_400_000;
        let held = |q: medmesh_sinks::quiet_hours::QuietHours| {
            q.hold_until(medmesh_model::Priority::Low, july_evening)
        };
        let london = quiet("time_zone = \"Europe/London\"").unwrap();
        assert_eq!(held(london), Some(july_evening + 8 * 3_600_000 + 1_800_000));
        // Neither key: UTC, so 21:30 is not yet quiet.
        assert_eq!(held(quiet("").unwrap()), None);
        assert!(quiet("utc_offset = \"+01:00\"").is_ok());

        let both = quiet("time_zone = \"Europe/London\"\nutc_offset = \"+01:00\"").unwrap_err();
        assert!(
            both.contains("alarms.quiet_hours") && both.contains("not both"),
            "{both}"
        );
        let unknown = quiet("time_zone = \"Mars/Olympus_Mons\"").unwrap_err();
        assert!(
            unknown.contains("alarms.quiet_hours") && unknown.contains("\"Mars/Olympus_Mons\""),
            "{unknown}"
        );
    }

    #[test]
    fn the_site_time_zone_and_dashboard_address_are_checked() {
        let email = "[alarms.email]\nsmtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"a@b.org\"\n";
        let with = |keys: &str| build(&format!("[alarms]\n{keys}\n{email}"));
        let ok =
            with("time_zone = \"Asia/Kolkata\"\ndashboard_url = \"https://medmesh.example.org/\"")
                .unwrap()
                .email
                .unwrap();
        assert_eq!(ok.time_zone.iana_name(), Some("Asia/Kolkata"));
        assert_eq!(
            ok.dashboard_url.as_deref(),
            Some("https://medmesh.example.org")
        );
        let err = |keys: &str| {
            with(keys)
                .err()
                .unwrap_or_else(|| panic!("accepted: {keys}"))
        };
        assert!(err("time_zone = \"Mars/Base\"").contains("alarms.time_zone \"Mars/Base\""));
        for bad in [
            "medmesh.example.org",
            "ftp://x.org",
            "https://x.org/?a=1",
            "https://x.org/#/alarms",
        ] {
            assert!(
                err(&format!("dashboard_url = \"{bad}\"")).contains("alarms.dashboard_url"),
                "{bad}"
            );
        }
        // Quiet hours without a zone of their own read the site's clock:
        // 2026-07-01T21:30Z is 03:00 in India, inside 22:00-07:00.
        let q = build(
            "[alarms]\ntime_zone = \"Asia/Kolkata\"\n[alarms.quiet_hours]\nstart = \"22:00\"\nend = \"07:00\"\n\
             [alarms.webhook]\nurls = [\"http://127.0.0.1:9/\"]\nsecret = \"0123456789abcdef\"",
        )
        .unwrap()
        .webhook
        .unwrap()
        .quiet_hours
        .unwrap();
        let july_evening = 1_782_941_400_000;
        assert_eq!(
            q.hold_until(medmesh_model::Priority::Low, july_evening),
            Some(july_evening + 4 * 3_600_000)
        );
    }
}
