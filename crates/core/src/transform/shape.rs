//! The columns a route keeps of a row, worked out once per row shape.
//!
//! A table's rows come with the same column names in the same order, record after
//! record, so which of them a route keeps, each one's plan, and their order by name are
//! the same for all of them. They are worked out for the first row of a shape (a plan
//! lookup per column, a sort, the last of a repeated name kept) and remembered on the
//! thread; a later row of that shape only has its names compared with the remembered
//! ones. The result is the same either way: a row of a shape not remembered (or too
//! large to remember) is worked out in full.

use std::cell::RefCell;

use super::routes::Route;
use crate::dms::Row;

/// Shapes remembered per thread: more than the tables one batch usually holds. When
/// all are taken, the next new shape takes the place of the one remembered longest ago
/// (its buffers reused), so a thread that meets more shapes than this costs a
/// comparison per remembered shape and a copy of the names more than it did before
/// shapes were remembered.
const SHAPES: usize = 32;

/// Rows with more columns, or longer names in all, are worked out every time, so what
/// a thread remembers stays small whatever the input: at most about 10 KiB a shape.
const MAX_COLUMNS: usize = 256;
const MAX_NAME_BYTES: usize = 4 * 1024;

/// What a route keeps of rows of one shape.
#[derive(Default)]
struct Shape {
    /// The route's plans ([`Route::plans_id`]) the slots index.
    plans: u64,
    /// The row's column names in order, joined; `ends` has where each ends.
    names: String,
    ends: Vec<usize>,
    /// The kept columns: (index in the row, plan slot), by source name, a repeated
    /// name's last occurrence only.
    kept: Vec<(usize, u32)>,
}

impl Shape {
    fn fits(&self, plans: u64, row: &Row<'_>) -> bool {
        if self.plans != plans || self.ends.len() != row.columns.len() {
            return false;
        }
        let mut start = 0;
        self.ends.iter().zip(&row.columns).all(|(&end, column)| {
            let same = self.names.get(start..end) == Some(&*column.name);
            start = end;
            same
        })
    }

    /// Becomes the shape of `row`, whose kept columns are `kept`.
    fn become_(&mut self, plans: u64, row: &Row<'_>, kept: &[(usize, u32)]) {
        self.plans = plans;
        self.names.clear();
        self.ends.clear();
        for column in &row.columns {
            self.names.push_str(&column.name);
            self.ends.push(self.names.len());
        }
        self.kept.clear();
        self.kept.extend_from_slice(kept);
    }
}

/// The shapes a thread remembers, and which one a new shape replaces when all are taken.
#[derive(Default)]
struct Remembered {
    shapes: Vec<Shape>,
    next: usize,
}

thread_local! {
    static REMEMBERED: RefCell<Remembered> = RefCell::new(Remembered::default());
}

/// Calls `keep(index in the row, plan slot)` for each column `route` keeps of `row`, in
/// source-name order, a repeated name's last occurrence only. `keep` must not call this
/// again (it runs while the thread's shapes are borrowed).
pub(super) fn kept(route: &Route, row: &Row<'_>, mut keep: impl FnMut(usize, u32)) {
    let plans = route.plans_id();
    let mut done = false;
    // A thread being torn down remembers nothing: the row is worked out.
    let _ = REMEMBERED.try_with(|remembered| {
        let mut remembered = remembered.borrow_mut();
        if let Some(shape) = remembered.shapes.iter().find(|s| s.fits(plans, row)) {
            shape
                .kept
                .iter()
                .for_each(|&(index, slot)| keep(index, slot));
            done = true;
            return;
        }
        let worked_out = work_out(route, row);
        let name_bytes: usize = row.columns.iter().map(|c| c.name.len()).sum();
        if row.columns.len() <= MAX_COLUMNS && name_bytes <= MAX_NAME_BYTES {
            if remembered.shapes.len() < SHAPES {
                remembered.shapes.push(Shape::default());
            }
            let at = remembered.next % remembered.shapes.len().max(1);
            remembered.next = (at + 1) % SHAPES;
            if let Some(shape) = remembered.shapes.get_mut(at) {
                shape.become_(plans, row, &worked_out);
            }
        }
        worked_out
            .iter()
            .for_each(|&(index, slot)| keep(index, slot));
        done = true;
    });
    if !done {
        work_out(route, row)
            .iter()
            .for_each(|&(index, slot)| keep(index, slot));
    }
}

/// [`kept`] worked out in full.
fn work_out(route: &Route, row: &Row<'_>) -> Vec<(usize, u32)> {
    let mut kept: Vec<(usize, u32)> = row
        .columns
        .iter()
        .enumerate()
        .filter_map(|(index, column)| {
            let slot = route.plan_slot(&column.name);
            route.plan_at(slot).keep.then_some((index, slot))
        })
        .collect();
    let name = |&(index, _): &(usize, u32)| row.columns.get(index).map(|c| &*c.name);
    // Stable: of a repeated column the last occurrence is kept, as a JSON reader would.
    kept.sort_by(|a, b| name(a).cmp(&name(b)));
    kept.reverse();
    kept.dedup_by(|later, earlier| name(later) == name(earlier));
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dms::Column;
    use crate::transform::routes::Routes;
    use serde_json::value::RawValue;
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    fn row<'a>(names: &[&str], value: &'a RawValue) -> Row<'a> {
        Row {
            columns: names
                .iter()
                .map(|&name| Column {
                    // Owned, as a name with escapes is: the comparisons are by text.
                    name: Cow::Owned(name.to_owned()),
                    value,
                })
                .collect(),
        }
    }

    fn routes(rest: &str) -> Routes {
        let text =
            format!("[[route]]\ntable = \"app.t\"\ntopics = [\"t\"]\nkey = [\"id\"]\n{rest}");
        Routes::parse(&text, "routes").expect("valid routes")
    }

    fn one() -> &'static RawValue {
        serde_json::from_str("1").expect("json")
    }

    fn collected(route: &Route, row: &Row<'_>) -> Vec<(usize, u32)> {
        let mut out = Vec::new();
        kept(route, row, |index, slot| out.push((index, slot)));
        out
    }

    fn remembers(route: &Route, row: &Row<'_>) -> bool {
        let plans = route.plans_id();
        REMEMBERED.with(|r| r.borrow().shapes.iter().any(|s| s.fits(plans, row)))
    }

    /// A row of a shape seen before gets what working it out gives, for the route it
    /// is read for: not another route's (same names, other plans), not another shape's
    /// (other names, other order, one column more, the same names split otherwise, a
    /// last column that differs).
    #[test]
    fn a_remembered_shape_gives_what_working_it_out_gives() {
        let with_exclude = routes("exclude = [\"b\", \"c\", \"ab\"]\n");
        let with_include = routes("include = [\"id\", \"b\"]\nrename = { b = \"bee\" }\n");
        let folded = routes("ignore_case = true\nexclude = [\"b\"]\n");
        let rows = [
            row(&["id", "b", "a", "c"], one()),
            row(&["id", "b", "a", "d"], one()),
            row(&["b", "id", "a", "c"], one()),
            row(&["id", "a", "a", "B"], one()),
            row(&["ID", "B", "a"], one()),
            row(&["ab", "c"], one()),
            row(&["a", "bc"], one()),
            row(&["id", "a"], one()),
            row(&["id", "a", "e"], one()),
            row(&["", ""], one()),
        ];
        // Fewer (route, row) pairs than a thread remembers, so later rounds read them
        // remembered.
        assert!(rows.len() * 3 <= SHAPES);
        let mut seen = Vec::new();
        for round in 0..3 {
            for routes in [&with_exclude, &with_include, &folded] {
                let route = &routes.routes[0];
                for row in &rows {
                    let remembered = collected(route, row);
                    assert_eq!(remembered, work_out(route, row), "round {round}");
                    assert!(remembers(route, row));
                    if round == 0 {
                        let names: Vec<&str> = remembered
                            .iter()
                            .map(|&(i, _)| &*row.columns[i].name)
                            .collect();
                        seen.push(names.join(","));
                    }
                }
            }
        }
        let expected = [
            // exclude b, c, ab
            "a,id", "a,d,id", "a,id", "B,a,id", "B,ID,a", "", "a,bc", "a,id", "a,e,id", "",
            // include id, b
            "b,id", "b,id", "b,id", "id", "", "", "", "id", "id", "",
            // ignore_case, exclude b
            "a,c,id", "a,d,id", "a,c,id", "a,id", "ID,a", "ab,c", "a,bc", "a,id", "a,e,id", "",
        ];
        assert_eq!(seen, expected);
    }

    /// Of a repeated column the last occurrence is kept, remembered or not, whatever
    /// the number of columns (the standard library sorts up to 20 by insertion, which is
    /// stable whatever the call).
    #[test]
    fn a_repeated_column_keeps_its_last_occurrence() {
        let routes = routes("");
        let route = &routes.routes[0];
        for size in [4, 30, 200] {
            let names: Vec<String> = (0..size)
                .map(|i| match i % 3 {
                    1 => "r".to_owned(),
                    _ => format!("c{:02}", size - i),
                })
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let row = row(&names, one());
            // What a JSON object reader keeps: each name's last index, by name.
            let last: BTreeMap<&str, usize> =
                names.iter().enumerate().map(|(i, &n)| (n, i)).collect();
            let expected: Vec<usize> = last.into_values().collect();
            for _ in 0..2 {
                let indices: Vec<usize> = collected(route, &row).iter().map(|&(i, _)| i).collect();
                assert_eq!(indices, expected, "{size} columns");
            }
        }
    }

    /// A thread remembers at most `SHAPES` shapes: a new one replaces the one
    /// remembered longest ago.
    #[test]
    fn a_thread_remembers_a_bounded_number_of_shapes() {
        let routes = routes("");
        let route = &routes.routes[0];
        let rows: Vec<Row<'_>> = (0..SHAPES + 5)
            .map(|i| row(&["id", &format!("x{i}")], one()))
            .collect();
        for row in &rows {
            collected(route, row);
        }
        assert_eq!(REMEMBERED.with(|r| r.borrow().shapes.len()), SHAPES);
        assert!(!remembers(route, &rows[4]));
        assert!(remembers(route, &rows[5]));
        assert!(remembers(route, &rows[SHAPES + 4]));
        // The shapes in reused places read as their own rows.
        for row in &rows[SHAPES..] {
            assert_eq!(collected(route, row), work_out(route, row));
        }
    }

    /// A row too large to remember (too many columns, or names too long in all) is
    /// worked out every time, and not remembered.
    #[test]
    fn a_row_too_large_to_remember_is_not_remembered() {
        let routes = routes("");
        let route = &routes.routes[0];
        let many: Vec<String> = (0..=MAX_COLUMNS).map(|i| format!("c{i:04}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let long = "n".repeat(MAX_NAME_BYTES + 1);
        for row in [row(&many, one()), row(&["id", &long], one())] {
            assert_eq!(collected(route, &row), work_out(route, &row));
            assert!(!remembers(route, &row));
        }
        // "id" and the rest: exactly the most a shape may hold.
        let fits = row(&["id", &long[3..]], one());
        collected(route, &fits);
        assert!(remembers(route, &fits));
    }
}
