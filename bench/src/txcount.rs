//! Storage transactions per operation, from the counting proxy's snapshots: the deltas of
//! each phase (submit, work, one status read) divided by the operations completed.

use crate::common::{result, Args, BoxError};

/// One reading of the proxy's counts.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub struct Snap {
    pub blob_writes: u64,
    pub blob_writes_refused: u64,
    pub blob_reads: u64,
    pub queue_calls: u64,
    pub queue_empty_receives: u64,
}

impl Snap {
    pub fn parse(json: &str) -> Result<Snap, BoxError> {
        let v: serde_json::Value = serde_json::from_str(json)?;
        let get = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_u64())
                .ok_or_else(|| format!("counts without {k}: {json}"))
        };
        Ok(Snap {
            blob_writes: get("blob_writes")?,
            blob_writes_refused: get("blob_writes_refused")?,
            blob_reads: get("blob_reads")?,
            queue_calls: get("queue_calls")?,
            queue_empty_receives: get("queue_empty_receives")?,
        })
    }

    fn minus(self, o: Snap) -> Snap {
        Snap {
            blob_writes: self.blob_writes - o.blob_writes,
            blob_writes_refused: self.blob_writes_refused - o.blob_writes_refused,
            blob_reads: self.blob_reads - o.blob_reads,
            queue_calls: self.queue_calls - o.queue_calls,
            queue_empty_receives: self.queue_empty_receives - o.queue_empty_receives,
        }
    }

    fn plus(self, o: Snap) -> Snap {
        Snap {
            blob_writes: self.blob_writes + o.blob_writes,
            blob_writes_refused: self.blob_writes_refused + o.blob_writes_refused,
            blob_reads: self.blob_reads + o.blob_reads,
            queue_calls: self.queue_calls + o.queue_calls,
            queue_empty_receives: self.queue_empty_receives + o.queue_empty_receives,
        }
    }

    /// Calls that did something: every blob call and every queue call but the empty polls.
    pub fn useful(self) -> u64 {
        self.blob_writes + self.blob_reads + self.queue_calls - self.queue_empty_receives
    }
}

pub async fn snapshot(http: &reqwest::Client, proxy: &str) -> Result<Snap, BoxError> {
    let r = http.get(format!("{proxy}/__counts")).send().await?;
    Snap::parse(&r.error_for_status()?.text().await?)
}

pub async fn reset(http: &reqwest::Client, proxy: &str) -> Result<Snap, BoxError> {
    let r = http.post(format!("{proxy}/__reset")).send().await?;
    Snap::parse(&r.error_for_status()?.text().await?)
}

/// Prints `RESULT tx_<phase>_<class> <per operation>` for each phase `(name, from, to)` and
/// for all of them together (`tx_all_...`).
pub fn report(n: usize, phases: &[(&str, Snap, Snap)]) {
    let per = |v: u64| format!("{:.2}", v as f64 / n.max(1) as f64);
    let mut all = Snap::default();
    let mut lines: Vec<(String, Snap)> = Vec::new();
    for (name, from, to) in phases {
        let d = to.minus(*from);
        all = all.plus(d);
        lines.push((name.to_string(), d));
    }
    lines.push(("all".into(), all));
    result("tx_n", n);
    for (name, d) in lines {
        result(&format!("tx_{name}_writes"), per(d.blob_writes));
        result(&format!("tx_{name}_refused"), per(d.blob_writes_refused));
        result(&format!("tx_{name}_reads"), per(d.blob_reads));
        result(
            &format!("tx_{name}_queue"),
            per(d.queue_calls - d.queue_empty_receives),
        );
        result(&format!("tx_{name}_empty"), per(d.queue_empty_receives));
        result(&format!("tx_{name}_total"), per(d.useful()));
    }
}

/// `bench txreport --n N --submit0 F --submit1 F --ready F --drained F --read F`: the
/// handler's figures from snapshot files bench/run.sh took with curl around each phase. The
/// work phase runs from the end of the submits to the drained queue, so it includes the
/// standalone instance's start-up (also reported whole, as `tx_startup_calls`).
pub fn txreport(a: &Args) -> Result<(), BoxError> {
    let read =
        |k: &str| -> Result<Snap, BoxError> { Snap::parse(&std::fs::read_to_string(a.s(k))?) };
    let (s0, s1, ready, drained, done) = (
        read("submit0")?,
        read("submit1")?,
        read("ready")?,
        read("drained")?,
        read("read")?,
    );
    let n = a.n("n", 1);
    report(
        n,
        &[
            ("submit", s0, s1),
            ("work", s1, drained),
            ("status", drained, done),
        ],
    );
    result("tx_startup_calls", ready.minus(s1).useful());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn useful_calls_leave_the_empty_polls_out() {
        let s = Snap::parse(
            r#"{"blob_writes":4,"blob_writes_refused":1,"blob_reads":2,"queue_calls":10,"queue_receives":8,"queue_empty_receives":7}"#,
        )
        .unwrap();
        assert_eq!(s.useful(), 9);
        assert_eq!(s.minus(s), Snap::default());
    }
}
