//! `rand::` — randomness for games and picks (not for secrets).
//!
//! ```rhai
//! let dice = rand::int(1, 6);                       // 1..=6
//! let food = rand::pick(["noodles", "rice", "dumplings"]);
//! let prize = rand::weighted(["common", "rare", "legendary"], [80, 18, 2]);
//! ```

use rhai::{Array, Dynamic, EvalAltResult, FLOAT, INT, Module};

use super::convert::script_error;
use super::documented;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn int(lo: INT, hi: INT) -> RhaiResult<INT> {
    if lo > hi {
        return Err(script_error(format!("rand::int: the low end {lo} is above the high end {hi}")));
    }
    Ok(rand::random_range(lo..=hi))
}

fn index(len: usize) -> usize {
    rand::random_range(0..len)
}

fn shuffle(mut items: Array) -> Array {
    for i in (1..items.len()).rev() {
        items.swap(i, rand::random_range(0..=i));
    }
    items
}

fn weighted(items: Array, weights: Array) -> RhaiResult<Dynamic> {
    if items.len() != weights.len() {
        return Err(script_error(format!(
            "rand::weighted: {} items but {} weights; give one weight per item",
            items.len(),
            weights.len()
        )));
    }
    let mut ws = Vec::with_capacity(weights.len());
    for w in &weights {
        let w = w
            .as_float()
            .or_else(|_| w.as_int().map(|i| i as FLOAT))
            .map_err(|t| script_error(format!("rand::weighted: weights are numbers, got {t}")))?;
        if !(w >= 0.0 && w.is_finite()) {
            return Err(script_error(format!("rand::weighted: weights are 0 or more, got {w}")));
        }
        ws.push(w);
    }
    let total: FLOAT = ws.iter().sum();
    if items.is_empty() || total <= 0.0 {
        return Ok(Dynamic::UNIT);
    }
    let mut at = rand::random::<FLOAT>() * total;
    for (item, w) in items.into_iter().zip(ws) {
        if at < w {
            return Ok(item);
        }
        at -= w;
    }
    Ok(Dynamic::UNIT)
}

/// Builds the `rand` module.
pub fn module() -> Module {
    let mut m = Module::new();
    documented("int", &["lo: int", "hi: int"], "a random integer from `lo` to `hi`, both included")
        .set_into_module(&mut m, int);
    documented("float", &[], "a random number from 0 (included) to 1 (excluded)")
        .set_into_module(&mut m, rand::random::<FLOAT>);
    documented("chance", &["p: number"], "true with probability `p` (0 to 1)")
        .set_into_module(&mut m, |p: FLOAT| rand::random::<FLOAT>() < p);
    documented("pick", &["items: array"], "a random item, `()` when the array is empty").set_into_module(
        &mut m,
        |items: Array| if items.is_empty() { Dynamic::UNIT } else { items[index(items.len())].clone() },
    );
    documented("shuffle", &["items: array"], "the items in a random order (a new array)")
        .set_into_module(&mut m, shuffle);
    documented("weighted", &["items: array", "weights: array"], "a random item, each as likely as its weight")
        .set_into_module(&mut m, weighted);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive_and_bad_input_is_an_error() {
        let seen: std::collections::BTreeSet<INT> = (0..2000).map(|_| int(1, 3).unwrap()).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(int(5, 5).unwrap(), 5);
        assert!(int(2, 1).is_err());
        let items: Array = vec![Dynamic::from("a"), Dynamic::from("b")];
        assert!(weighted(items.clone(), vec![Dynamic::from(1 as INT)]).is_err());
        let never_b = (0..500).all(|_| {
            weighted(items.clone(), vec![Dynamic::from(1 as INT), Dynamic::from(0 as INT)])
                .unwrap()
                .into_string()
                .unwrap()
                == "a"
        });
        assert!(never_b, "a weight of 0 is never picked");
        let mut s: Vec<INT> =
            shuffle((0..50).map(Dynamic::from_int).collect()).iter().map(|d| d.as_int().unwrap()).collect();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
    }
}
