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

/// Shapes remembered per thread: more than the tables one batch usually holds. The
/// oldest is forgotten first.
const SHAPES: usize = 32;

/// Rows with more columns, or longer names in all, are worked out every time, so what
/// a thread remembers stays small whatever the input.
const MAX_COLUMNS: usize = 256;
const MAX_NAME_BYTES: usize = 8 * 1024;

/// What a route keeps of rows of one shape.
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
}

thread_local! {
    static REMEMBERED: RefCell<Vec<Shape>> = const { RefCell::new(Vec::new()) };
}

/// The columns `route` keeps of `row`, as (index in the row, plan slot), in source-name
/// order, a repeated name's last occurrence only.
pub(super) fn kept(route: &Route, row: &Row<'_>, out: &mut Vec<(usize, u32)>) {
    let plans = route.plans_id();
    let found = REMEMBERED.try_with(|shapes| {
        let shapes = shapes.borrow();
        match shapes.iter().find(|shape| shape.fits(plans, row)) {
            Some(shape) => {
                out.extend_from_slice(&shape.kept);
                true
            }
            None => false,
        }
    });
    if found == Ok(true) {
        return;
    }
    work_out(route, row, out);
    let name_bytes: usize = row.columns.iter().map(|c| c.name.len()).sum();
    if row.columns.len() > MAX_COLUMNS || name_bytes > MAX_NAME_BYTES {
        return;
    }
    let mut names = String::with_capacity(name_bytes);
    let ends = row
        .columns
        .iter()
        .map(|column| {
            names.push_str(&column.name);
            names.len()
        })
        .collect();
    let shape = Shape {
        plans,
        names,
        ends,
        kept: out.clone(),
    };
    // A thread being torn down remembers nothing.
    let _ = REMEMBERED.try_with(|shapes| {
        let mut shapes = shapes.borrow_mut();
        if shapes.len() >= SHAPES {
            shapes.remove(0);
        }
        shapes.push(shape);
    });
}

/// [`kept`] worked out in full.
fn work_out(route: &Route, row: &Row<'_>, out: &mut Vec<(usize, u32)>) {
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
    out.extend(kept);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dms::Column;
    use crate::transform::routes::Routes;
    use serde_json::value::RawValue;
    use std::borrow::Cow;

    fn row<'a>(names: &[&'a str], value: &'a RawValue) -> Row<'a> {
        Row {
            columns: names
                .iter()
                .map(|&name| Column {
                    name: Cow::Borrowed(name),
                    value,
                })
                .collect(),
        }
    }

    fn routes(text: &str) -> Routes {
        Routes::parse(text, "routes").expect("valid routes")
    }

    fn names<'r>(row: &'r Row<'_>, kept: &[(usize, u32)]) -> Vec<&'r str> {
        kept.iter().map(|&(i, _)| &*row.columns[i].name).collect()
    }

    /// A row of a shape seen before gets what working it out gives, for the route it
    /// is read for: not another route's (same names, other plans), not another shape's
    /// (same number of columns, other names or order).
    #[test]
    fn a_remembered_shape_gives_what_working_it_out_gives() {
        let value: &RawValue = serde_json::from_str("1").expect("json");
        let with_exclude = routes(
            "[[route]]\ntable = \"app.t\"\ntopics = [\"t\"]\nkey = [\"id\"]\nexclude = [\"b\"]\n",
        );
        let with_include = routes(
            "[[route]]\ntable = \"app.t\"\ntopics = [\"t\"]\nkey = [\"id\"]\ninclude = [\"id\", \"b\"]\nrename = { b = \"bee\" }\n",
        );
        let folded = routes(
            "[[route]]\ntable = \"app.t\"\ntopics = [\"t\"]\nkey = [\"id\"]\nignore_case = true\nexclude = [\"b\"]\n",
        );
        let rows = [
            row(&["id", "b", "a", "c"], value),
            row(&["id", "b", "a", "d"], value),
            row(&["b", "id", "a", "c"], value),
            row(&["id", "a", "a", "B"], value),
            row(&["ID", "B", "a"], value),
        ];
        let mut seen = Vec::new();
        for round in 0..3 {
            for routes in [&with_exclude, &with_include, &folded] {
                let route = &routes.routes[0];
                for row in &rows {
                    let mut remembered = Vec::new();
                    kept(route, row, &mut remembered);
                    let mut worked_out = Vec::new();
                    work_out(route, row, &mut worked_out);
                    assert_eq!(remembered, worked_out, "round {round}");
                    if round == 0 {
                        seen.push(names(row, &worked_out));
                    }
                }
            }
        }
        let expected: Vec<Vec<&str>> = vec![
            vec!["a", "c", "id"],
            vec!["a", "d", "id"],
            vec!["a", "c", "id"],
            vec!["B", "a", "id"],
            vec!["B", "ID", "a"],
            vec!["b", "id"],
            vec!["b", "id"],
            vec!["b", "id"],
            vec!["id"],
            vec![],
            vec!["a", "c", "id"],
            vec!["a", "d", "id"],
            vec!["a", "c", "id"],
            vec!["a", "id"],
            vec!["ID", "a"],
        ];
        assert_eq!(seen, expected);
    }

    /// Of a repeated column the last occurrence is kept, remembered or not.
    #[test]
    fn a_repeated_column_keeps_its_last_occurrence() {
        let routes = routes("[[route]]\ntable = \"app.t\"\ntopics = [\"t\"]\nkey = [\"id\"]\n");
        let route = &routes.routes[0];
        let value: &RawValue = serde_json::from_str("1").expect("json");
        let row = row(&["id", "a", "b", "a"], value);
        for _ in 0..2 {
            let mut out = Vec::new();
            kept(route, &row, &mut out);
            let indices: Vec<usize> = out.iter().map(|&(i, _)| i).collect();
            assert_eq!(indices, [3, 2, 0]);
        }
    }

    /// A row too large to remember is worked out every time, and nothing of it is kept.
    #[test]
    fn a_row_too_large_to_remember_is_not_remembered() {
        let routes = routes("[[route]]\ntable = \"app.t\"\ntopics = [\"t\"]\nkey = [\"id\"]\n");
        let route = &routes.routes[0];
        let value: &RawValue = serde_json::from_str("1").expect("json");
        let long: Vec<String> = (0..MAX_COLUMNS + 1).map(|i| format!("c{i:04}")).collect();
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        let row = row(&long, value);
        let mut out = Vec::new();
        kept(route, &row, &mut out);
        assert_eq!(out.len(), MAX_COLUMNS + 1);
        let plans = route.plans_id();
        let remembered = REMEMBERED.with(|s| s.borrow().iter().any(|s| s.fits(plans, &row)));
        assert!(!remembered);
    }
}
