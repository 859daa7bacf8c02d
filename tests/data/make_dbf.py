"""Writes the DBF files tests/import_export.rs imports, with the `dbf`
package (an independent writer): dBASE III, FoxPro 2 and Visual FoxPro
tables with memos, deleted rows and non-UTF-8 code pages.

    python make_dbf.py OUTDIR
"""
import datetime
import sys

import dbf

out = sys.argv[1]

# dBASE III, memo in clientes.dbt, code page 850 (DOS Latin 1).
t = dbf.Table(
    out + "/clientes.dbf",
    "CODIGO C(6); NOME C(20); LIMITE N(12,2); QTD N(5,0); CADASTRO D; ATIVO L; OBS M",
    dbf_type="db3",
    codepage="cp850",
)
t.open(dbf.READ_WRITE)
t.append(("000001", "Ângela Souza", 5000.5, 3, datetime.date(2024, 5, 1), True,
          "Cliente desde 1998.\nPaga em dia."))
t.append(("000002", "José Gonçalves", -12.25, 0, None, False, ""))
t.append(("000003", "Müller & Cia", 0, 99999, datetime.date(1999, 12, 31), None, "ação çà"))
t.append(("000004", "Removido", 1, 1, datetime.date(2000, 1, 1), True, "apagado"))
dbf.delete(t[3])
t.close()

# FoxPro 2, float field, memo in notas.fpt, code page 1252 (Windows Latin 1).
t = dbf.Table(
    out + "/notas.dbf",
    "NUM N(8,0); TAXA F(10,4); TEXTO M",
    dbf_type="fp",
    codepage="cp1252",
)
t.open(dbf.READ_WRITE)
t.append((1, 1.5, "première"))
t.append((2, -0.0625, "x" * 600))
dbf.delete(t[0])
t.close()

# FoxPro 2, memo in itens.fpt, code page 850.
t = dbf.Table(
    out + "/itens.dbf",
    "ITEM C(10); VALOR N(9,2); NOTA M",
    dbf_type="fp",
    codepage="cp850",
)
t.open(dbf.READ_WRITE)
t.append(("Açúcar", 4.99, "cristal\n1 kg"))
t.append(("Óleo", 12.0, ""))
dbf.delete(t[1])
t.close()

# Visual FoxPro: integer, double, currency, datetime; memo in produtos.fpt, cp1252.
t = dbf.Table(
    out + "/produtos.dbf",
    "COD C(4); PRECO N(10,3); ESTOQUE I; PESO B; CUSTO Y; ALTERADO T; NOTA M",
    dbf_type="vfp",
    codepage="cp1252",
)
t.open(dbf.READ_WRITE)
t.append(("P001", 19.9, 42, 0.1, 1234.5678, datetime.datetime(2024, 5, 1, 13, 45, 10), "café"))
t.append(("P002", 0.001, -7, 1e300, -0.0001, None, ""))
dbf.delete(t[1])
t.close()
