"""The command line: ``python -m sevlm_lib.{train,evaluate,predict,check,features}`` (thin forwarders at the
package top run these modules). Nothing in the library imports this package."""
