"""Policies: the contract every policy honours (`wam.policies.base`) and the policies that ship."""
