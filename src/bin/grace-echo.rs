include!("../../examples/echo.rs");
