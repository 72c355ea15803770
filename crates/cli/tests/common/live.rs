//! The live stream (`GET /api/v1/stream`) as a test reads it.

use super::TestServer;
use serde_json::Value;
use std::time::Duration;

/// The live stream (`GET /api/v1/stream`), read event by event.
pub struct Live {
    response: reqwest::Response,
    buffer: String,
    /// Events received and not yet asked for, in arrival order: (name, data).
    unclaimed: Vec<(String, Value)>,
}

impl Live {
    pub async fn open(s: &TestServer) -> Live {
        let response = s.http.get(s.url("/api/v1/stream")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        Live {
            response,
            buffer: String::new(),
            unclaimed: Vec::new(),
        }
    }

    /// The first `name` event not asked for yet whose data `matches`,
    /// waiting for it if needed.
    pub async fn event(&mut self, name: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let field = |f: &str| event.lines().find_map(|l| l.strip_prefix(f));
                if let (Some(kind), Some(data)) = (field("event: "), field("data: ")) {
                    let data = serde_json::from_str(data).unwrap();
                    self.unclaimed.push((kind.to_string(), data));
                }
            }
            if let Some(i) = self
                .unclaimed
                .iter()
                .position(|(kind, v)| kind == name && matches(v))
            {
                return self.unclaimed.remove(i).1;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no such {name} event on the live stream"))
                .unwrap()
                .expect("stream open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The first alarm event with `change` and `rule` not asked for yet,
    /// waiting for it if needed; returns its alarm. (Changes of one message
    /// arrive together, in no order the test should rely on.)
    pub async fn alarm(&mut self, change: &str, rule: &str) -> Value {
        self.event("alarm", |v| {
            v["change"] == change && v["alarm"]["rule"] == rule
        })
        .await["alarm"]
            .clone()
    }
}

impl Live {
    /// Every event received within `wait`, besides those already asked
    /// for: to check what did *not* come.
    pub async fn drain(&mut self, wait: Duration) -> Vec<(String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, self.response.chunk())
            .await
            .map(|c| c.unwrap())
        {
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
        while let Some(end) = self.buffer.find("\n\n") {
            let event: String = self.buffer.drain(..end + 2).collect();
            let field = |f: &str| event.lines().find_map(|l| l.strip_prefix(f));
            if let (Some(kind), Some(data)) = (field("event: "), field("data: ")) {
                self.unclaimed
                    .push((kind.to_string(), serde_json::from_str(data).unwrap()));
            }
        }
        std::mem::take(&mut self.unclaimed)
    }
}
