//! `loadbalance [round_robin]`: shuffles the address records of every answer so clients spread
//! over them (CNAMEs stay in front).

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use rand::seq::SliceRandom;

use crate::corefile::{CorefileError, Directive};

#[derive(Debug, Clone, Default)]
pub struct LoadBalance;

impl LoadBalance {
    pub fn parse(d: &Directive) -> Result<Self, CorefileError> {
        match d.arg_strs().as_slice() {
            [] | ["round_robin"] => Ok(LoadBalance),
            [other, ..] => Err(d.err(format!("unknown policy '{other}' (only round_robin)"))),
        }
    }

    /// Shuffles the A/AAAA/MX records in place among the positions they occupy.
    pub fn apply(&self, m: &mut Message) {
        let positions: Vec<usize> = m
            .answers
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                matches!(
                    r.record_type(),
                    RecordType::A | RecordType::AAAA | RecordType::MX
                )
            })
            .map(|(i, _)| i)
            .collect();
        if positions.len() < 2 {
            return;
        }
        let mut recs: Vec<_> = positions.iter().map(|&i| m.answers[i].clone()).collect();
        recs.shuffle(&mut rand::rng());
        for (p, r) in positions.into_iter().zip(recs) {
            m.answers[p] = r;
        }
    }
}
