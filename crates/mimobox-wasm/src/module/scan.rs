//! A look at a module's sections before it is compiled: how many functions
//! and how much code it has (to bound the memory compiling it takes), and
//! how many memories and tables it needs (to refuse, without compiling, a
//! module that no instance slot can hold).

use wasmparser::{Parser, Payload, TypeRef};

use crate::guest::limits::{MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};

/// Host memory compiling takes on top of the module, whatever its size.
const COMPILE_BASE: u64 = 48 << 20;
/// Host memory compiling takes per function, even an empty one: Cranelift's
/// per-function state and the artifact's metadata.
const COMPILE_PER_FUNCTION: u64 = 6 << 10;
/// Host memory compiling takes per byte of function bodies.
const COMPILE_PER_CODE_BYTE: u64 = 24;
/// Host memory compiling takes per byte of data segments: the artifact
/// holds a copy of them, and writing it out another.
const COMPILE_PER_DATA_BYTE: u64 = 2;

/// The default compile budget: 64 MiB plus this many times the module's
/// size.
pub(crate) const BUDGET_PER_MODULE_BYTE: u64 = 32;
/// The fixed part of the default compile budget.
pub(crate) const BUDGET_BASE: u64 = 64 << 20;

/// What the scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ModuleShape {
    pub(crate) functions: u64,
    pub(crate) code_bytes: u64,
    pub(crate) data_bytes: u64,
    pub(crate) memories: usize,
    pub(crate) tables: usize,
    pub(crate) largest_table: u64,
}

impl ModuleShape {
    /// Reads the section headers of a binary module. `None` when it is not
    /// a well-formed module; the compiler then reports what is wrong.
    pub(crate) fn of(bytes: &[u8]) -> Option<ModuleShape> {
        let mut shape = ModuleShape::default();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.ok()? {
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        match import.ok()?.ty {
                            TypeRef::Memory(_) => shape.memories += 1,
                            TypeRef::Table(table) => shape.add_table(table.initial),
                            _ => {}
                        }
                    }
                }
                Payload::MemorySection(memories) => shape.memories += memories.count() as usize,
                Payload::TableSection(tables) => {
                    for table in tables {
                        shape.add_table(table.ok()?.ty.initial);
                    }
                }
                Payload::DataSection(data) => {
                    for segment in data {
                        shape.data_bytes += segment.ok()?.data.len() as u64;
                    }
                }
                Payload::CodeSectionStart { count, size, .. } => {
                    shape.functions += u64::from(count);
                    shape.code_bytes += u64::from(size);
                }
                _ => {}
            }
        }
        Some(shape)
    }

    fn add_table(&mut self, initial: u64) {
        self.tables += 1;
        self.largest_table = self.largest_table.max(initial);
    }

    /// Why no instance slot can hold this module, if none can.
    pub(crate) fn beyond_limits(&self) -> Option<String> {
        if self.memories > MAX_MEMORIES {
            return Some(format!(
                "{} memories, more than the {MAX_MEMORIES} a sandbox allows",
                self.memories
            ));
        }
        if self.tables > MAX_TABLES {
            return Some(format!("{} tables, more than the {MAX_TABLES} a sandbox allows", self.tables));
        }
        if self.largest_table > MAX_TABLE_ELEMENTS as u64 {
            return Some(format!(
                "a table of {} elements, more than the {MAX_TABLE_ELEMENTS} a sandbox allows",
                self.largest_table
            ));
        }
        None
    }

    /// About how much host memory compiling the module takes.
    pub(crate) fn compile_memory(&self) -> u64 {
        COMPILE_BASE
            .saturating_add(self.functions.saturating_mul(COMPILE_PER_FUNCTION))
            .saturating_add(self.code_bytes.saturating_mul(COMPILE_PER_CODE_BYTE))
            .saturating_add(self.data_bytes.saturating_mul(COMPILE_PER_DATA_BYTE))
    }
}

/// The compile budget for a module of `module_bytes` bytes: the configured
/// one, else the default that scales with the module.
pub(crate) fn compile_budget(configured: Option<u64>, module_bytes: u64) -> u64 {
    configured
        .unwrap_or_else(|| BUDGET_BASE.saturating_add(module_bytes.saturating_mul(BUDGET_PER_MODULE_BYTE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_functions_memories_and_tables() {
        let bytes = wat::parse_str(
            r#"(module
                (import "env" "m" (memory 1))
                (memory 1)
                (table 10 funcref)
                (table 3 funcref)
                (func) (func (nop)))"#,
        )
        .unwrap();
        let shape = ModuleShape::of(&bytes).unwrap();
        assert_eq!((shape.functions, shape.memories, shape.tables, shape.largest_table), (2, 2, 2, 10));
        assert_eq!(shape.beyond_limits(), None);
    }

    #[test]
    fn too_many_tables_is_beyond_limits() {
        let tables = "(table 1 funcref)".repeat(MAX_TABLES + 1);
        let bytes = wat::parse_str(format!("(module {tables})")).unwrap();
        let reason = ModuleShape::of(&bytes).unwrap().beyond_limits().unwrap();
        assert!(reason.contains("17 tables"), "{reason}");
    }

    #[test]
    fn data_segments_count_towards_compile_memory() {
        let bytes =
            wat::parse_str(format!(r#"(module (memory 1) (data (i32.const 0) "{}"))"#, "a".repeat(4096)))
                .unwrap();
        let shape = ModuleShape::of(&bytes).unwrap();
        assert_eq!(shape.data_bytes, 4096);
        assert_eq!(shape.compile_memory(), COMPILE_BASE + 4096 * COMPILE_PER_DATA_BYTE);
    }

    #[test]
    fn many_empty_functions_cost_more_than_their_bytes() {
        let shape = ModuleShape { functions: 300_000, code_bytes: 900_000, ..ModuleShape::default() };
        assert!(shape.compile_memory() > compile_budget(None, 3_000_000));
    }
}
