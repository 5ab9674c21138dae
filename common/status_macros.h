// Status propagation macros. Debian's Abseil (20220623) ships no RETURN_IF_ERROR, so the
// project defines its own, once, here.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define VSDM_CONCAT_INNER_(a, b) a##b
#define VSDM_CONCAT_(a, b) VSDM_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define VSDM_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status vsdm_status_ = (expr);        \
    if (!vsdm_status_.ok()) return vsdm_status_; \
  } while (0)

// `lhs` = value of `rexpr` (an absl::StatusOr<T>), or returns its status if not OK.
#define VSDM_ASSIGN_OR_RETURN(lhs, rexpr) \
  VSDM_ASSIGN_OR_RETURN_IMPL_(VSDM_CONCAT_(vsdm_statusor_, __LINE__), lhs, rexpr)
#define VSDM_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
